"""runpod/template.json: generated from the env var table and versions.conf, committed, and
kept equal to the generator's output."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.core.config import load_versions
from provisioner.generate.template import api_input, render_template
from provisioner.manifest.envmap import ENV_VARS, EnvVar
from provisioner.manifest.profiles import load_profile_file
from tests.support.cli import run_phoenix
from tests.support.paths import REPO

COMMITTED = REPO / "runpod" / "template.json"


def test_committed_template_equals_the_generated_one() -> None:
    proc = run_phoenix("template", "--check", str(COMMITTED))
    assert proc.returncode == 0, proc.stderr  # fix: phoenix template --write runpod/template.json
    generated = render_template(ENV_VARS, load_versions())
    assert json.loads(COMMITTED.read_text(encoding="utf-8")) == generated


def test_pod_settings() -> None:
    template = render_template(ENV_VARS, load_versions())
    assert template["containerDiskInGb"] == 150
    assert template["volumeMountPath"] == "/workspace"
    assert template["ports"] == "8188/http,8080/http,8189/http"
    assert template["imageName"] == "phoenix:0.1.0"
    assert render_template(ENV_VARS, load_versions(), image="ghcr.io/me/p:1")["imageName"] == (
        "ghcr.io/me/p:1"
    )


def test_every_variable_with_default_description_and_secret_mark() -> None:
    env = {e["key"]: e for e in render_template(ENV_VARS, load_versions())["env"]}
    for var in ENV_VARS:
        if var.alias_of is not None:
            assert var.name not in env  # the aliased variable is listed instead
            assert var.alias_of in env
            continue
        entry = env[var.name]
        assert entry["secret"] is var.secret
        assert var.help in entry["description"] and var.tier in entry["description"]
        if var.secret:
            assert entry["value"] == ""
        else:
            assert entry["value"] == (var.default or "")
    assert env["HF_REPOS_TO_DOWNLOAD"]["value"] == "black-forest-labs/FLUX.1-dev"
    assert env["FB_USERNAME"]["value"] == "admin"
    assert {k for k, e in env.items() if e["secret"]} == {
        "HUGGINGFACE_TOKEN", "CIVITAI_TOKEN", "FB_PASSWORD"
    }


def test_basic_variables_come_first() -> None:
    tiers = [e["description"].split("]")[0] for e in
             render_template(ENV_VARS, load_versions())["env"]]
    assert tiers == sorted(tiers, key=lambda t: t != "[Basic")


def test_a_secret_default_is_never_emitted() -> None:
    planted = EnvVar("X_TOKEN", "secret", "hf_planted_default", None, "Basic", True, "a secret")
    template = render_template([planted], load_versions())
    assert template["env"] == [
        {"key": "X_TOKEN", "value": "", "description": "[Basic] a secret", "secret": True}
    ]
    assert "hf_planted_default" not in json.dumps(template)


def test_readme_carries_pins_and_every_listed_variable() -> None:
    versions = load_versions()
    template = render_template(ENV_VARS, versions)
    readme = template["readme"]
    assert versions["COMFYUI_VERSION"] in readme and versions["NGC_PYTORCH_TAG"] in readme
    for entry in template["env"]:
        assert f"`{entry['key']}`" in readme
    assert "`HUGGINGFACE_TOKEN` (secret)" in readme


def test_api_form_has_only_key_and_value() -> None:
    proc = run_phoenix("template", "--api", "--image", "registry.example/phoenix:1")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["imageName"] == "registry.example/phoenix:1"
    assert all(set(e) == {"key", "value"} for e in data["env"])
    full = render_template(ENV_VARS, load_versions(), image="registry.example/phoenix:1")
    assert data == api_input(full)


def test_check_fails_on_drift_with_a_fix_hint(tmp_path: Path) -> None:
    stale = tmp_path / "template.json"
    data = json.loads(COMMITTED.read_text(encoding="utf-8"))
    data["containerDiskInGb"] = 50
    stale.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    proc = run_phoenix("template", "--check", str(stale))
    assert proc.returncode == 1
    assert f"{stale}: the template is out of date" in proc.stderr
    assert f"phoenix template --write {stale}" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_check_of_a_missing_file_is_a_user_error(tmp_path: Path) -> None:
    proc = run_phoenix("template", "--check", str(tmp_path / "absent.json"))
    assert proc.returncode == 1 and "cannot read the template" in proc.stderr
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe")
    proc = run_phoenix("template", "--check", str(binary))
    assert proc.returncode == 1 and "not UTF-8 text" in proc.stderr and "hint:" in proc.stderr


def test_write_then_check_round_trips(tmp_path: Path) -> None:
    target = tmp_path / "out" / "template.json"
    target.parent.mkdir()
    assert run_phoenix("template", "--write", str(target)).returncode == 0
    assert target.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")
    assert run_phoenix("template", "--check", str(target)).returncode == 0


def test_readme_names_every_variant_with_its_vram_from_profiles_yaml() -> None:
    # FLUX.2 and the other profiled models: the VRAM text follows profiles.yaml (no drift)
    profiles = load_profile_file()
    readme = render_template(ENV_VARS, load_versions())["readme"]
    assert "FLUX.2-dev`: bf16 ≈ 100 GB from 64 GiB, fp8 ≈ 54 GB from 32 GiB" in readme
    for repo, profile in profiles.profiles.items():
        for name, variant in profile.variants.items():
            line = next(li for li in readme.splitlines() if li.startswith(f"- `{repo}`"))
            assert f"{name} " in line and f"from {variant.vram_gib:g} GiB" in line
    data = profiles.model_dump()
    first = next(p for p in data["profiles"].values() if p["variants"])
    next(iter(first["variants"].values()))["vram_gib"] = 99
    changed = type(profiles).model_validate(data)
    assert "from 99 GiB" in render_template(ENV_VARS, load_versions(), profiles=changed)["readme"]
