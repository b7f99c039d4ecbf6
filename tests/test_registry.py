"""The Comfy Registry metadata (pyproject.toml) passes `comfy node validate`, the check comfy-cli
runs before `comfy node publish`: the configuration parses, the version is set, and ruff's
security rules (exec, eval, several statements on one line) find nothing in the pack.

comfy-cli (with ruff) is installed with `pip --target` into a temporary folder (a few minutes
offline from the package index) and used through PYTHONPATH only, so the venv never sees it.
"""
import os
import shutil
import subprocess
import sys

import pytest

from comfy_host import ROOT
from helpers import pip_install_apart

COMFY_CLI = "comfy-cli"


@pytest.fixture(scope="module")
def comfy_cli(tmp_path_factory):
    """validate(folder) -> (exit code, output) of `comfy node validate` run in that folder."""
    site = pip_install_apart(tmp_path_factory.mktemp("comfy-cli"), COMFY_CLI, "ruff")
    home = tmp_path_factory.mktemp("home")  # comfy-cli writes its config and tracking consent there

    def validate(folder) -> tuple[int, str]:
        env = dict(os.environ, PYTHONPATH=str(site), HOME=str(home), PYTHONDONTWRITEBYTECODE="1")
        r = subprocess.run([sys.executable, "-m", "comfy_cli", "--skip-prompt", "node", "validate"],
                           cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        return r.returncode, r.stdout + r.stderr

    return validate


def test_the_pack_passes_comfy_node_validate_with_no_security_warning(comfy_cli):
    code, out = comfy_cli(ROOT)
    assert code == 0, out
    assert "All validation checks passed successfully" in out and "Security warnings" not in out, out


def test_comfy_node_validate_refuses_metadata_without_a_version(comfy_cli, tmp_path):
    """The control: the same tool, on this pyproject.toml with its version emptied, fails."""
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        text = f.read()
    assert '\nversion = "' in text
    (tmp_path / "pyproject.toml").write_text(text.replace('\nversion = "', '\nversion = "" # was "', 1))
    shutil.copy(os.path.join(ROOT, "__init__.py"), tmp_path)
    code, out = comfy_cli(tmp_path)
    assert code != 0 and "project version is empty" in out, out
