"""Generated artefacts stay equal to their sources: schemas, README tables, examples."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from provisioner.generate.docs import README_BEGIN, README_END, readme_block
from provisioner.generate.schema import schema_text
from provisioner.manifest.merge import load_desired
from tests.support.cli import clean_env, run_phoenix
from tests.support.paths import REPO


@pytest.mark.parametrize("kind", ["manifest", "plan"])
def test_committed_schema_equals_generated(kind: str) -> None:
    committed = (REPO / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8")
    assert committed == schema_text(kind), f"run: phoenix schema --kind {kind} --write schemas"


@pytest.mark.parametrize("kind", ["manifest", "plan"])
def test_schema_is_valid_draft_2020_12_with_descriptions(kind: str) -> None:
    schema = json.loads(schema_text(kind))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    if kind == "manifest":
        for name, body in schema["$defs"].items():
            for prop, spec in body.get("properties", {}).items():
                assert spec.get("description") or "$ref" in spec or "allOf" in spec, (name, prop)


EXAMPLES = [*sorted((REPO / "examples").glob("*.yaml")), REPO / "manifests" / "default.yaml"]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_example_manifest_validates(path: Path) -> None:
    result = run_phoenix("validate", "--manifest", str(path), env=clean_env())
    assert result.returncode == 0, result.stderr
    schema = json.loads(schema_text("manifest"))
    from ruamel.yaml import YAML

    jsonschema.Draft202012Validator(schema).validate(YAML(typ="safe").load(path.read_text()))


def test_env_example_is_accepted() -> None:
    env = {}
    for line in (REPO / "examples" / "runpod.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            if value:
                env[key] = value
    desired, _ = load_desired(None, env)
    assert any(m.id.startswith("civitai:") for m in desired.models)


@pytest.mark.parametrize("tier", ["Basic", "Advanced"])
def test_readme_env_tables_are_generated(tier: str) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    begin, end = README_BEGIN.format(tier=tier), README_END.format(tier=tier)
    start = readme.index(begin)
    stop = readme.index(end) + len(end)
    assert readme[start:stop] == readme_block(tier), "regenerate the README table"


def test_readme_opens_with_run_and_test_commands() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    assert "docker run" in blocks[0] and "phoenix plan" in blocks[0]
    assert blocks[1].strip() == "pip install -e '.[test]' && pytest"
    ci = (REPO / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci
    assert "150 GB" in readme and "VRAM" in readme


def test_env_command_lists_every_variable() -> None:
    from provisioner.manifest.envmap import ENV_VARS, SEED_VARIABLES

    out = run_phoenix("env", env=clean_env()).stdout
    for var in ENV_VARS:
        assert var.name in out
    assert len(SEED_VARIABLES) == 13
    assert all(name in {v.name for v in ENV_VARS} for name in SEED_VARIABLES)


def test_readme_profiles_table_is_generated(tmp_path: Path) -> None:
    from provisioner.generate import profiles_table
    from provisioner.manifest.profiles import load_profile_file

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index(profiles_table.BEGIN)
    stop = readme.index(profiles_table.END) + len(profiles_table.END)
    fix = "python -m provisioner.generate.profiles_table --write README.md"
    assert readme[start:stop] == profiles_table.readme_block(), fix
    variants = load_profile_file().profiles["black-forest-labs/FLUX.2-dev"].variants
    fp8 = variants["fp8"]
    row = next(line for line in readme.splitlines() if "FLUX.2-dev` | `fp8`" in line)
    assert f"≈ {fp8.size / 1e9:.1f}" in row and f"{fp8.vram_gib:g} GiB" in row
    assert "`gguf-q4` |" in readme  # no gated mark: city96's repo is not the gated one
    stale = tmp_path / "README.md"
    stale.write_text(readme.replace(row, "| stale |"), encoding="utf-8")
    assert profiles_table.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == readme
