"""The README's generated blocks (env var tables, profiles table) stay equal to their sources;
the README opens with the run and test commands, and `phoenix env` lists every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioner.generate.docs import README_BEGIN, README_END, readme_block
from tests.support.cli import clean_env, run_phoenix
from tests.support.paths import REPO


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
