"""The gate in an ordinary repository: models beside source, docs and data files, an ignored
build/ folder, a [tool.initaudit] config applied from any working directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import initaudit
from initaudit.selector import SelectorError

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "initaudit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    r = tmp_path / "repo"
    (r / "models").mkdir(parents=True)
    (r / "src").mkdir()
    (r / "build" / "lib").mkdir(parents=True)
    shutil.copy(SAMPLES / "mlp_relu_clean.onnx", r / "models" / "clean.onnx")
    shutil.copy(SAMPLES / "mlp_he_sigmoid.onnx", r / "models" / "he_sigmoid.onnx")
    shutil.copy(SAMPLES / "make_samples.py", r / "models" / "make_samples.py")
    (r / "src" / "train.py").write_text('"""Training script."""\nimport torch\n')
    (r / "README.md").write_text("Bonjour: models live in models/.\n")
    (r / "data.csv").write_text("2,3,4\n5,6,7\n")
    (r / "labels.json").write_text('{"0": "cat"}\n')
    (r / "notes.txt").write_text("*.onnx are tracked with LFS\n")
    # `pip install .` leaves a copy of the package (and a broken model) in build/
    (r / "build" / "lib" / "broken.onnx").write_bytes(b"\x08\x07garbage")
    (r / ".gitignore").write_text("build/\n*.egg-info/\n")
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    return r


@pytest.mark.e2e
def test_repository_audit_skips_ordinary_files_and_ignored_build(repo: Path) -> None:
    proc = _cli(".", "--format", "json", cwd=repo)
    assert proc.returncode == 1, proc.stderr  # the He-into-sigmoid model fails the gate
    report = json.loads(proc.stdout)
    paths = sorted(f["path"] for f in report["files"])
    assert paths == ["models/clean.onnx", "models/he_sigmoid.onnx"]
    assert report["summary"]["unreadable_files"] == 0
    proc = _cli(".", cwd=repo)
    assert "files looked at, 2 models" in proc.stderr
    # --no-ignore walks build/ too: its broken model is then reported (exit 2)
    assert _cli(".", "--no-ignore", "--format", "json", cwd=repo).returncode == 2


@pytest.mark.e2e
def test_repository_config_applies_from_another_working_directory(repo: Path, tmp_path: Path) -> None:
    (repo / "pyproject.toml").write_text('[tool.initaudit]\nignore = ["he-before-saturating"]\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _cli(str(repo), "--format", "json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert all(f["code"] != "IA101" for f in json.loads(proc.stdout)["files"][1]["findings"])
    proc = _cli("config", str(repo / "models" / "clean.onnx"), "--format", "json", cwd=elsewhere)
    assert json.loads(proc.stdout)["config_file"] == str((repo / "pyproject.toml").resolve())
    # the API and the pytest helper read the same file
    report = initaudit.audit(str(repo / "models" / "he_sigmoid.onnx"))
    assert not any(f.code == "IA101" for f in report.findings)
    assert any(f.code == "IA101" for f in initaudit.audit(str(repo / "models" / "he_sigmoid.onnx"),
                                                          use_config=False).findings)


@pytest.mark.e2e
def test_sample_models_folder_with_its_generator_script(tmp_path: Path) -> None:
    proc = _cli(str(SAMPLES), "--format", "json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report["summary"]["unreadable_files"] == 0, proc.stderr
    assert not any(f["path"].endswith(".py") for f in report["files"])


@pytest.mark.parametrize("kwargs", [{"select": ["IA9"]}, {"select": "no-such-rule"},
                                    {"ignore": ["he-before-saturatin"]}])
def test_api_rejects_selectors_that_match_nothing(kwargs: dict) -> None:
    with pytest.raises(SelectorError, match="unknown rule"):
        initaudit.audit(str(SAMPLES / "mlp_he_sigmoid.onnx"), **kwargs)


def test_api_validates_values_like_the_cli() -> None:
    with pytest.raises(ValueError, match="severity"):
        initaudit.audit(str(SAMPLES / "mlp_he_sigmoid.onnx"), fail_on="fatal")
    with pytest.raises(ValueError, match="min_confidence"):
        initaudit.audit(str(SAMPLES / "mlp_he_sigmoid.onnx"), min_confidence=2)
    report = initaudit.audit(str(SAMPLES / "mlp_he_sigmoid.onnx"), select="IA1", use_config=False)
    assert report.findings and all(f.code.startswith("IA1") for f in report.findings)


def test_partial_audit_exit_code_and_short_reprs() -> None:
    report = initaudit.audit(str(SAMPLES / "mlp_relu_clean.onnx"), max_seconds=1e-9, use_config=False)
    assert report.files[0].partial
    assert report.exit_code() == 3 and report.exit_code(allow_partial=True) == 0
    assert len(repr(report)) < 200 and len(repr(report.files[0])) < 200
    assert "partial_files=1" in repr(report)


@pytest.mark.e2e
def test_stale_ignore_and_suppressed_count(repo: Path) -> None:
    (repo / "pyproject.toml").write_text(
        '[tool.initaudit]\n'
        '[[tool.initaudit.per-tensor-ignores]]\npattern = "fc1*"\nrules = ["IA101"]\nreason = "ablation"\n'
        '[[tool.initaudit.per-tensor-ignores]]\npattern = "no_such_tensor*"\nreason = "stale"\n')
    proc = _cli(".", cwd=repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 suppressed" in proc.stdout
    assert "'no_such_tensor*'" in proc.stderr and "matched no finding" in proc.stderr
    assert "'fc1*'" not in proc.stderr
