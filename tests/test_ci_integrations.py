"""The GitHub Action's steps and the pre-commit hook, run for real (subprocesses)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"

pytestmark = pytest.mark.e2e


def _scratch_repo(path: Path) -> Path:
    (path / "models").mkdir(parents=True)
    shutil.copy(SAMPLES / "mlp_he_sigmoid.onnx", path / "models" / "he_sigmoid.onnx")
    shutil.copy(SAMPLES / "mlp_relu_clean.onnx", path / "models" / "clean.onnx")
    (path / "train.py").write_text('"""Training."""\n')
    (path / "README.md").write_text("Bonjour\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q", str(path)], check=True)
    subprocess.run([*git, "-C", str(path), "add", "."], check=True)
    subprocess.run([*git, "-C", str(path), "commit", "-qm", "models"], check=True)
    return path


def _action_steps() -> list[dict]:
    yaml = pytest.importorskip("yaml")
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    return action["runs"]["steps"]


def _expand(text: str, values: dict[str, str]) -> str:
    """Replace ``${{ inputs.x }}``, ``${{ github.action_path }}``, ``${{ steps.audit.outputs.x }}``."""
    return re.sub(r"\$\{\{\s*([^}]+?)\s*\}\}", lambda m: values[m.group(1)], text)


def test_action_steps_run_as_a_script(tmp_path: Path) -> None:
    """Every `run:` step of action.yml, in order, in a fresh virtualenv: the install from the
    action's own checkout, the SARIF audit and the gate (exit 1 on the He-into-sigmoid model)."""
    repo = _scratch_repo(tmp_path / "repo")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    # the dependencies come from the test environment (a .pth file): only initaudit is built
    site = Path(sysconfig.get_paths(vars={"base": str(env_dir), "platbase": str(env_dir)})["purelib"])
    (site / "_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    outputs = tmp_path / "github_output"
    summary = tmp_path / "step_summary.md"
    values = {"inputs.paths": ".", "inputs.args": "", "inputs.sarif-file": "initaudit.sarif",
              "inputs.fail": "true", "inputs.version": "", "inputs.python-version": "3.11",
              "inputs.upload-sarif": "false", "github.action_path": str(ROOT)}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{env_dir / 'bin'}{os.pathsep}{env['PATH']}", GITHUB_OUTPUT=str(outputs),
               GITHUB_STEP_SUMMARY=str(summary), PIP_DISABLE_PIP_VERSION_CHECK="1")
    code = None
    for step in _action_steps():
        if "run" not in step:
            continue  # setup-python and upload-sarif are other actions
        condition = step.get("if", "")
        if "steps.audit.outputs.exit-code != '0'" in condition and code == "0":
            continue
        step_env = {k: _expand(str(v), values) for k, v in step.get("env", {}).items()}
        proc = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=repo, env={**env, **step_env},
                              capture_output=True, text=True, timeout=600, check=False)
        if step.get("id") == "audit":
            assert proc.returncode == 0, proc.stderr
            code = re.search(r"exit-code=(\d+)", outputs.read_text()).group(1)
            values["steps.audit.outputs.exit-code"] = code
            assert (repo / "initaudit.sarif").is_file()
        elif step.get("name") == "Report and gate":
            assert proc.returncode == 1, proc.stdout + proc.stderr
            assert proc.stdout.startswith("::notice title=initaudit::2 files")
            assert "::error file=models/he_sigmoid.onnx,title=IA101" in proc.stdout
            assert summary.read_text(encoding="utf-8").startswith("## ❌ initaudit: failed")
        else:
            assert proc.returncode == 0, proc.stdout + proc.stderr
    assert code == "1"


# pre-commit builds a fresh virtualenv from PyPI for every new commit of this repository
# (about 2 minutes here): marked slow, and run by CI (.ci/run sets CI and installs pre-commit)
@pytest.mark.slow
def test_pre_commit_hook_with_try_repo(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("-m") or "") and not os.environ.get("CI"):
        pytest.skip("slow (builds pre-commit's virtualenv from PyPI): run with -m slow or CI=1")
    if shutil.which("pre-commit") is None and not (Path(sys.executable).parent / "pre-commit").exists():
        pytest.skip("pre-commit is not installed")
    exe = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    repo = _scratch_repo(tmp_path / "repo")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run([exe, "try-repo", str(ROOT), "initaudit", "--all-files"], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "IA101" in out and "he-before-saturating" in out
    assert "init scheme" not in out  # --quiet: findings and the summary, no tables
    assert "train.py" not in out and "README" not in out
