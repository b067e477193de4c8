"""End to end: the command a CI job runs (``python -m initaudit`` in a subprocess, from a
working directory in tmp_path) with config files, ignores, baselines, --jobs, discovery,
--statistics, inspect and config. Exit codes: 0 clean, 1 findings, 2 usage or read error.

Each subprocess costs about a second: every test here checks something only a real process
shows (config found upward from the cwd, the exit code, stderr being one line).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_models"


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"}
    env.pop("INITAUDIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "initaudit", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("initaudit: error: ")
    return lines[0]


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    """A project folder with models/ holding copies of a few sample models."""
    models = tmp_path / "proj" / "models"
    models.mkdir(parents=True)
    for name in ("cnn_clean", "mlp_he_sigmoid", "constant_weights", "selu_glorot"):
        shutil.copy(SAMPLES / f"{name}.onnx", models / f"{name}.onnx")
    return tmp_path / "proj"


def codes(proc: subprocess.CompletedProcess[str]) -> list[tuple[str, str, str]]:
    data = json.loads(proc.stdout)
    return [(Path(f["path"]).name, x["code"], x["tensor"]) for f in data["files"] for x in f["findings"]]


# ------------------------------------------------------------------------------ exit codes


@pytest.mark.parametrize("model, expected", [("cnn_clean.onnx", 0), ("mlp_he_sigmoid.onnx", 1),
                                             ("notes.txt", 2)])
def test_exit_codes(project, model, expected):
    (project / "models" / "notes.txt").write_text("not a model\n")
    proc = run(f"models/{model}", cwd=project)
    assert proc.returncode == expected, proc.stderr
    if expected == 2:
        assert one_error_line(proc).startswith("initaudit: error: models/notes.txt: ")
    else:
        assert proc.stderr == ""


# ---------------------------------------------------------------------------------- config


def test_pyproject_found_upward_from_a_subfolder(project):
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.initaudit]\n'
                                            'ignore = ["he-before-saturating"]\n')
    sub = project / "models" / "deeper"
    sub.mkdir()
    proc = run("../mlp_he_sigmoid.onnx", cwd=sub)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IA101" not in proc.stdout


def test_initaudit_toml_beats_pyproject_and_cli_beats_both(project):
    (project / "pyproject.toml").write_text('[tool.initaudit]\nfail-on = "error"\n')
    (project / "initaudit.toml").write_text('fail-on = "warning"\n')
    assert run("models/selu_glorot.onnx", cwd=project).returncode == 1  # IA103 is a warning
    proc = run("models/selu_glorot.onnx", "--fail-on", "error", cwd=project)
    assert proc.returncode == 0


def test_per_tensor_ignore_with_reason_and_path(project):
    (project / "initaudit.toml").write_text(
        '[[per-tensor-ignores]]\npattern = "fc1.*"\nrules = ["constant-weights"]\n'
        'reason = "fixture kept constant on purpose"\npath = "models/constant_*.onnx"\n')
    proc = run("models/constant_weights.onnx", "models/mlp_he_sigmoid.onnx", "-f", "json", cwd=project)
    assert codes(proc) == [("mlp_he_sigmoid.onnx", "IA101", "fc1.weight")]
    assert proc.returncode == 1
    # the ignore is scoped to its path: the same tensor elsewhere is still reported
    other = project / "other.onnx"
    shutil.copy(project / "models" / "constant_weights.onnx", other)
    assert codes(run("other.onnx", "-f", "json", cwd=project)) == [("other.onnx", "IA201", "fc1.weight")]


@pytest.mark.parametrize("body, key, problem", [
    ('[tool.initaudit]\nselect = ["IA999"]\n', "select", "unknown rule 'IA999'"),
    ('[tool.initaudit]\n[[tool.initaudit.per-tensor-ignores]]\npattern = "fc1.*"\nrules = ["IA201"]\n',
     "per-tensor-ignores[0]", "'reason' is required"),
    ('[tool.initaudit]\nfail-on = 3\n', "fail-on", "expected a string"),
    ('[tool.initaudit]\nfail_on = "warning"\n', "fail_on", "unknown key (did you mean 'fail-on'?)"),
])
def test_bad_config_is_exit_2_naming_file_key_and_problem(project, body, key, problem):
    (project / "pyproject.toml").write_text(body)
    proc = run("models/cnn_clean.onnx", cwd=project)
    assert proc.returncode == 2 and proc.stdout == ""
    line = one_error_line(proc)
    assert line.startswith(f"initaudit: error: pyproject.toml: [tool.initaudit] {key}: "), line
    assert problem in line


def test_explicit_config_file_and_config_command(project, tmp_path):
    cfg = tmp_path / "ci.toml"
    cfg.write_text('select = ["IA2"]\nactivation = { "fc*" = "tanh" }\n')
    assert run("models/mlp_he_sigmoid.onnx", "--config", cfg, cwd=project).returncode == 0
    proc = run("config", "--config", cfg, "--fail-on", "warning", "--format", "json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    s = data["settings"]
    assert s["select"] == {"value": ["IA2"], "source": os.path.relpath(cfg, project)}
    assert s["fail-on"] == {"value": "warning", "source": "command line"}
    assert s["ignore"]["source"] == "default"
    assert s["activation"]["value"] == ["fc*=tanh"]
    human = run("config", "--config", cfg, cwd=project)
    assert human.returncode == 0 and "select" in human.stdout and "command line" not in human.stdout


# -------------------------------------------------------------------------------- baseline


def test_baseline_accepts_known_findings_and_catches_new_ones(project):
    proc = run("models", "--write-baseline", "initaudit-baseline.json", "-q", cwd=project)
    assert proc.returncode == 0, proc.stderr
    baseline = json.loads((project / "initaudit-baseline.json").read_text())
    n = len(baseline["findings"])
    assert f"wrote {n} findings to the baseline" in proc.stderr
    assert {e["path"] for e in baseline["findings"]} == {
        "models/mlp_he_sigmoid.onnx", "models/constant_weights.onnx", "models/selu_glorot.onnx"}

    # same findings, run from another folder: nothing new
    proc = run("../models", "--baseline", "../initaudit-baseline.json", "--fail-on", "info",
               cwd=project / "models")
    assert proc.returncode == 0, proc.stdout
    assert f"{n} findings accepted by the baseline" in proc.stdout

    # a new defect: only it is reported, and it fails the run
    shutil.copy(SAMPLES / "zero_hidden.onnx", project / "models" / "zero_hidden.onnx")
    proc = run("models", "--baseline", "initaudit-baseline.json", "-f", "json", cwd=project)
    assert proc.returncode == 1
    new = codes(proc)
    assert ("zero_hidden.onnx", "IA201", "fc1.weight") in new
    assert {name for name, _, _ in new} == {"zero_hidden.onnx"}
    assert json.loads(proc.stdout)["summary"]["baselined"] == n


def test_bad_baseline_is_exit_2(project):
    (project / "b.json").write_text("[1, 2")
    proc = run("models/cnn_clean.onnx", "--baseline", "b.json", cwd=project)
    assert proc.returncode == 2 and "b.json: not a baseline: invalid JSON" in one_error_line(proc)


# ------------------------------------------------------------------------- many inputs


def test_jobs_do_not_change_the_output(project):
    one = run("models", "-f", "json", "--jobs", "1", cwd=project)
    two = run("models", "-f", "json", "-j", "2", cwd=project)
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout
    assert [Path(f["path"]).name for f in json.loads(one.stdout)["files"]] == [
        "cnn_clean.onnx", "constant_weights.onnx", "mlp_he_sigmoid.onnx", "selu_glorot.onnx"]


def test_directory_discovery_by_content_with_exclude(project):
    models = project / "models"
    (models / "README.md").write_text("# models\n")
    (models / "renamed.weights").write_bytes((models / "cnn_clean.onnx").read_bytes())  # found by content
    (models / "pointer.safetensors").write_text("version https://git-lfs.github.com/spec/v1\noid x\n")
    (models / "legacy").mkdir()
    shutil.copy(SAMPLES / "zero_hidden.onnx", models / "legacy" / "old.onnx")
    proc = run(".", "--exclude", "legacy", "-f", "json", cwd=project)
    assert proc.returncode == 2  # the LFS pointer is named like a model: unreadable, not skipped
    assert one_error_line(proc).endswith("run `git lfs pull` first")
    paths = [f["path"] for f in json.loads(proc.stdout)["files"]]
    assert paths == ["models/cnn_clean.onnx", "models/constant_weights.onnx", "models/mlp_he_sigmoid.onnx",
                     "models/pointer.safetensors", "models/renamed.weights", "models/selu_glorot.onnx"]


def test_quoted_glob_and_a_pattern_matching_nothing(project):
    proc = run("models/**/*sig*.onnx", "-f", "json", cwd=project)
    assert [Path(f["path"]).name for f in json.loads(proc.stdout)["files"]] == ["mlp_he_sigmoid.onnx"]
    proc = run("models/*.pt", cwd=project)
    assert proc.returncode == 2
    assert one_error_line(proc) == "initaudit: error: models/*.pt: no file matches this pattern"


def test_statistics(project):
    proc = run("models", "--statistics", cwd=project)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["count", "code", "name"]
    assert ["1", "IA101", "he-before-saturating"] in [line.split() for line in lines]
    data = json.loads(run("models", "--statistics", "-f", "json", cwd=project).stdout)
    assert {"code": "IA201", "name": "constant-weights", "count": 1} in data
    report = json.loads(run("models", "-f", "json", cwd=project).stdout)
    assert sum(r["count"] for r in data) == sum(len(f["findings"]) for f in report["files"])


# --------------------------------------------------------------------------------- inspect


def test_inspect_human_and_json_with_layer_filter(project):
    proc = run("inspect", "models/mlp_he_sigmoid.onnx", "--layer", "fc1*", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert "fc1.weight" in proc.stdout and "fc1.bias" in proc.stdout and "fc2" not in proc.stdout
    assert "He/Kaiming normal (fan_in)" in proc.stdout and "std 95%" in proc.stdout
    data = json.loads(run("inspect", "models/mlp_he_sigmoid.onnx", "-f", "json", cwd=project).stdout)
    tensors = data["files"][0]["tensors"]
    assert [t["name"] for t in tensors] == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert tensors[0]["scheme"]["rule"] == "he" and tensors[1]["role"] == "bias"
    proc = run("inspect", "models/mlp_he_sigmoid.onnx", "--layer", "nope*", cwd=project)
    assert proc.returncode == 2 and "no tensor or layer matches 'nope*'" in one_error_line(proc)
