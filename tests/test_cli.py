"""The command line as a user meets it: exit codes, messages, options, subcommands.

Models are built with onnx.helper in tmp_path. Most tests call ``initaudit.cli.main`` in-process
(fast); the ones about what reaches a real terminal (no traceback, import cost) run
``python -m initaudit`` in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from initaudit import __version__  # noqa: E402
from initaudit.cli import main  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


# ---------------------------------------------------------------------------------- models


def mlp(path: Path, hidden_w: np.ndarray, act: str = "Relu", seed: int = 0) -> Path:
    """torch-export-like MLP: Gemm(fc1, transB=1) -> act -> Gemm(fc2). fc2 is Glorot uniform."""
    rng = np.random.default_rng(seed)
    hidden, n_in = hidden_w.shape
    limit = np.sqrt(6.0 / (hidden + 10))
    inits = [
        numpy_helper.from_array(hidden_w.astype(np.float32), "fc1.weight"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "fc1.bias"),
        numpy_helper.from_array(rng.uniform(-limit, limit, (10, hidden)).astype(np.float32), "fc2.weight"),
        numpy_helper.from_array(np.zeros(10, np.float32), "fc2.bias"),
    ]
    nodes = [
        helper.make_node("Gemm", ["input", "fc1.weight", "fc1.bias"], ["h"], name="/fc1/Gemm", transB=1),
        helper.make_node(act, ["h"], ["a"], name=f"/act/{act}"),
        helper.make_node("Gemm", ["a", "fc2.weight", "fc2.bias"], ["output"], name="/fc2/Gemm", transB=1),
    ]
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, n_in])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], initializer=inits)
    model = helper.make_model(graph, producer_name="pytorch", producer_version="2.13.0",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def clean(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    return mlp(tmp_path / "clean.onnx", rng.normal(0, np.sqrt(2 / 128), (64, 128)), "Relu")


@pytest.fixture()
def constant(tmp_path: Path) -> Path:
    return mlp(tmp_path / "constant.onnx", np.full((64, 64), 0.05), "Relu")


@pytest.fixture()
def selu_glorot(tmp_path: Path) -> Path:
    """A warning (IA103 selu-without-lecun) and no error."""
    rng = np.random.default_rng(2)
    limit = np.sqrt(6.0 / (256 + 32))
    return mlp(tmp_path / "selu_glorot.onnx", rng.uniform(-limit, limit, (32, 256)), "Selu")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def run_process(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    full_env.pop("INITAUDIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "initaudit", *map(str, args)], capture_output=True,
                          text=True, env=full_env, cwd=REPO, timeout=120)


def schema_validator():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "initaudit" / "schema" / "report.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema)


# ---------------------------------------------------------------------------------- exit codes


def test_clean_model_exits_0_and_says_what_was_analysed(capsys, clean):
    code, out, err = run(capsys, clean)
    assert code == 0, out
    assert err == ""
    assert str(clean) in out and "fc1.weight" in out and "He/Kaiming" in out
    assert re.search(r"1 file, 0 errors, \d+ warnings?, \d+ infos?", out)


def test_constant_weights_is_an_error_exit_1(capsys, constant):
    code, out, _ = run(capsys, constant)
    assert code == 1
    assert re.search(r"error +IA201 constant-weights fc1\.weight: all 4096 entries equal 0\.05", out)


def test_default_command_and_check_subcommand_are_the_same(capsys, constant):
    code1, out1, _ = run(capsys, constant)
    code2, out2, _ = run(capsys, "check", constant)
    assert (code1, out1) == (code2, out2)


def test_exit_zero_ignores_findings(capsys, constant):
    code, out, _ = run(capsys, constant, "--exit-zero")
    assert code == 0 and "IA201" in out


def test_fail_on_warning(capsys, selu_glorot):
    code, out, _ = run(capsys, selu_glorot)
    assert "IA103" in out and "selu-without-lecun" in out
    assert code == 0  # a warning does not fail by default
    assert run(capsys, selu_glorot, "--fail-on", "warning")[0] == 1
    assert run(capsys, selu_glorot, "--fail-on", "WARNING")[0] == 1


def test_fail_on_info_counts_infos(capsys, tmp_path):
    rng = np.random.default_rng(3)
    # Glorot before ReLU: under-scaled-for-relu (info)
    limit = np.sqrt(6.0 / (64 + 64))
    path = mlp(tmp_path / "glorot_relu.onnx", rng.uniform(-limit, limit, (64, 64)), "Relu")
    code, out, _ = run(capsys, path)
    assert "IA102" in out and code == 0
    assert run(capsys, path, "--fail-on", "info")[0] == 1


# ---------------------------------------------------------------------------------- selection


def test_ignore_by_name_code_and_prefix(capsys, constant):
    for selector in ("constant-weights", "IA201", "ia2", "IA2"):
        code, out, _ = run(capsys, constant, "--ignore", selector)
        assert code == 0, selector
        assert "IA201" not in out


def test_select_limits_rules(capsys, constant):
    code, out, _ = run(capsys, constant, "--select", "IA1,IA3")
    assert code == 0 and "IA201" not in out
    code, out, _ = run(capsys, constant, "--select", "IA1", "--select", "constant-weights")
    assert code == 1 and "IA201" in out


@pytest.mark.parametrize("option", ["--select", "--ignore"])
def test_unknown_rule_is_a_usage_error(capsys, constant, option):
    code, out, err = run(capsys, constant, option, "IA201,no-such-rule")
    assert code == 2
    assert out == ""
    assert err == f"initaudit: error: {option}: unknown rule 'no-such-rule' (run `initaudit rules` to list them)\n"


def test_min_confidence_drops_less_certain_findings(capsys, tmp_path):
    limit = np.sqrt(6.0 / (64 + 64))  # Glorot before ReLU: infos with confidence below 1
    path = mlp(tmp_path / "glorot_relu.onnx", np.random.default_rng(3).uniform(-limit, limit, (64, 64)))

    def confidences(*extra: str) -> list[float]:
        _, out, _ = run(capsys, "-f", "json", path, *extra)
        return [f["confidence"] for fr in json.loads(out)["files"] for f in fr["findings"]]

    everything = confidences()
    assert any(c < 0.99 for c in everything)
    kept = confidences("--min-confidence", "0.99")
    assert kept == [c for c in everything if c >= 0.99]


@pytest.mark.parametrize("args, message", [
    (["--fail-on", "fatal"], "--fail-on: unknown severity 'fatal'"),
    (["--min-confidence", "2"], "--min-confidence must be between 0 and 1"),
    (["--format", "xml"], "--format: unknown format 'xml'"),
    (["--activation", "fc1"], "--activation: activation hint 'fc1' must look like 'PATTERN=ACTIVATION'"),
    (["--activation", "fc1=wiggle"], "--activation: unknown activation 'wiggle'"),
])
def test_bad_options_exit_2_with_one_line(capsys, clean, args, message):
    code, out, err = run(capsys, clean, *args)
    assert code == 2
    assert err.startswith(f"initaudit: error: {message}") and err.count("\n") == 1
    assert out == ""


@pytest.mark.parametrize("args", [["--bogus"], ["--min-confidence", "abc"], []])
def test_click_usage_errors_are_one_line_too(capsys, clean, args):
    code, out, err = run(capsys, "check", *([clean] if args else []), *args)
    assert code == 2 and out == ""
    assert err.startswith("initaudit: error: ") and err.count("\n") == 1
    assert "(see `initaudit --help`)" in err


def test_activation_hint_is_applied(capsys, clean):
    code, out, _ = run(capsys, clean, "-f", "json", "--activation", "fc1=tanh")
    data = json.loads(out)
    fc1 = next(t for t in data["files"][0]["tensors"] if t["name"] == "fc1.weight")
    assert fc1["activation"] == "tanh" and fc1["activation_source"] == "hint"
    assert data["config"]["activation_hints"] == ["fc1=tanh"]
    assert code == 1  # He before tanh: he-before-saturating


# ---------------------------------------------------------------------------------- formats


def test_json_output_parses_and_validates(capsys, clean, constant):
    code, out, err = run(capsys, "--format", "json", clean, constant)
    assert code == 1 and err == ""
    data = json.loads(out)
    schema_validator().validate(data)
    assert data["tool"] == {"name": "initaudit", "version": __version__}
    assert data["summary"]["files"] == 2 and data["summary"]["errors"] >= 1
    assert [f["path"] for f in data["files"]] == [str(clean), str(constant)]
    assert data["files"][1]["findings"][0]["code"] == "IA201"


def test_output_writes_the_report_to_a_file(capsys, constant, tmp_path):
    target = tmp_path / "report.json"
    code, out, _ = run(capsys, constant, "-f", "json", "-o", target)
    assert code == 1 and out == ""
    schema_validator().validate(json.loads(target.read_text()))
    human = tmp_path / "report.txt"
    run(capsys, constant, "--output", human)
    text = human.read_text()
    assert "IA201 constant-weights" in text and not ANSI.search(text)


def test_output_to_unwritable_place_is_a_usage_error(capsys, constant, tmp_path):
    code, out, err = run(capsys, constant, "-o", tmp_path / "no" / "such" / "dir" / "r.json")
    assert code == 2 and "cannot write the report" in err and err.count("\n") == 1


def test_quiet_and_verbose(capsys, constant):
    _, quiet, _ = run(capsys, constant, "-q")
    assert "init scheme" not in quiet and "IA201" in quiet and "1 file, 1 error" in quiet
    _, verbose, _ = run(capsys, constant, "-v")
    assert "fc1.bias" in verbose and "not in the table" not in verbose
    _, default, _ = run(capsys, constant)
    assert "fc1.bias" not in default and "2 biases not in the table" in default


def test_no_colour_when_not_a_terminal(capsys, constant, monkeypatch):
    _, out, _ = run(capsys, constant)
    assert not ANSI.search(out)
    monkeypatch.setenv("FORCE_COLOR", "1")
    _, forced, _ = run(capsys, constant)
    assert ANSI.search(forced)
    _, off, _ = run(capsys, constant, "--no-color")
    assert not ANSI.search(off)
    monkeypatch.setenv("NO_COLOR", "1")
    _, nocolor, _ = run(capsys, constant)
    assert not ANSI.search(nocolor)


# ---------------------------------------------------------------------------------- bad files


def _truncated(tmp_path: Path) -> Path:
    rng = np.random.default_rng(4)
    good = mlp(tmp_path / "whole.onnx", rng.normal(0, 0.1, (64, 64)))
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return bad


def _text(tmp_path: Path) -> Path:
    p = tmp_path / "notes.onnx"
    p.write_text("these are not weights\n")
    return p


def _folder(tmp_path: Path) -> Path:
    p = tmp_path / "folder"
    p.mkdir()
    (p / "readme.txt").write_text("hi")
    return p


BAD_INPUTS = {
    "missing": lambda tmp: tmp / "does-not-exist.onnx",
    "directory": _folder,
    "text": _text,
    "truncated": _truncated,
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_unreadable_input_exits_2_with_one_line_and_no_traceback(tmp_path, kind):
    path = BAD_INPUTS[kind](tmp_path)
    proc = run_process(path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"initaudit: error: {path}: ")
    assert len(lines[0]) > len(f"initaudit: error: {path}: ") + 5  # a reason follows
    # the report itself says so too, and never calls the file clean
    assert "could not be read" in proc.stdout and "1 unreadable file" in proc.stdout
    assert "no findings" not in proc.stdout


def test_one_bad_file_does_not_stop_the_others(capsys, tmp_path, constant):
    bad = _text(tmp_path)
    code, out, err = run(capsys, bad, constant)
    assert code == 2  # the unreadable file wins over findings
    assert err.count("\n") == 1 and err.startswith(f"initaudit: error: {bad}: ")
    assert "IA201 constant-weights" in out  # the good file is still audited and reported
    assert "2 files, 1 error, 0 warnings" in out and "1 unreadable file" in out


def test_exit_zero_does_not_hide_an_unreadable_file(capsys, tmp_path, constant):
    code, _, _ = run(capsys, _text(tmp_path), constant, "--exit-zero")
    assert code == 2


def test_json_reports_unreadable_files_too(capsys, tmp_path, clean):
    bad = _truncated(tmp_path)
    code, out, err = run(capsys, "-f", "json", clean, bad)
    assert code == 2 and err.startswith(f"initaudit: error: {bad}: ")
    data = json.loads(out)
    schema_validator().validate(data)
    assert data["files"][1]["status"] == "error" and data["files"][1]["error"]
    assert data["summary"]["unreadable_files"] == 1


def test_internal_error_is_one_line_unless_debugging(capsys, clean, monkeypatch):
    import initaudit.engine

    def boom(path, config):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(initaudit.engine, "audit_path", boom)
    code, out, err = run(capsys, clean)
    assert code == 2
    assert err.startswith("initaudit: internal error: RuntimeError: boom second line (re-run with "
                          "INITAUDIT_DEBUG=1")
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setenv("INITAUDIT_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        main([str(clean)])


# ---------------------------------------------------------------------------------- subcommands


def test_rules_lists_every_rule(capsys):
    from initaudit.rules import registry

    code, out, _ = run(capsys, "rules")
    assert code == 0
    for r in registry().values():
        assert re.search(rf"{r.code}\s+{re.escape(r.name)}\s+{r.severity.value}\s", out)
    code, out, _ = run(capsys, "rules", "--format", "json")
    data = json.loads(out)
    assert code == 0 and [d["code"] for d in data] == list(registry())
    assert set(data[0]) >= {"code", "name", "severity", "summary"}


@pytest.mark.parametrize("key", ["IA201", "ia201", "constant-weights"])
def test_explain_by_code_or_name(capsys, key):
    code, out, _ = run(capsys, "explain", key)
    assert code == 0
    assert out.startswith("IA201 constant-weights")
    assert "default severity: error" in out
    assert len(out.splitlines()) > 2


def test_explain_unknown_rule(capsys):
    code, out, err = run(capsys, "explain", "no-such-rule")
    assert code == 2 and out == ""
    assert err == "initaudit: error: unknown rule 'no-such-rule' (run `initaudit rules` to list them)\n"


def test_help_shows_audit_usage_and_subcommands(capsys):
    for flag in ("--help", "-h"):
        code, out, _ = run(capsys, flag)
        assert code == 0
        assert out.startswith("Usage: initaudit [OPTIONS] PATH...")
        for text in ("--format", "--fail-on", "--select", "--exit-zero", "initaudit rules",
                     "initaudit explain NAME_OR_CODE", "Exit codes"):
            assert text in out


def test_no_arguments_is_a_usage_error(capsys):
    code, out, err = run(capsys)
    assert code == 2 and err.startswith("initaudit: error: no checkpoint given")


def test_version_is_fast_and_imports_no_numpy():
    proc = run_process("--version")
    assert proc.returncode == 0 and proc.stdout == f"initaudit {__version__}\n"
    probe = ("import sys; from initaudit.cli import main; main(['--version']); "
             "heavy = sorted(m for m in ('numpy', 'scipy', 'onnx', 'rich', 'initaudit.engine') "
             "if m in sys.modules); print(heavy)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60).stdout
    assert out.splitlines()[-1] == "[]"


def test_python_dash_m_runs_the_audit(constant):
    proc = run_process(constant)
    assert proc.returncode == 1 and "IA201 constant-weights" in proc.stdout and proc.stderr == ""


# ---------------------------------------------------------------------------------- samples


def _samples(tmp_path: Path) -> dict[str, Path]:
    try:
        from sample_models.make_samples import build_all
    except ImportError:
        pytest.skip("sample_models/make_samples.py not available")
    return build_all(tmp_path)


def test_sample_models_end_to_end(capsys, tmp_path):
    samples = _samples(tmp_path)
    code, out, err = run(capsys, "-f", "json", *samples.values())
    data = json.loads(out)
    schema_validator().validate(data)
    assert err == "" and code in (0, 1)
    by_name = {Path(f["path"]).stem: f for f in data["files"]}
    codes = {name: {f["code"] for f in fr["findings"]} for name, fr in by_name.items()}
    if "mlp_he_sigmoid" in codes:
        assert "IA101" in codes["mlp_he_sigmoid"]
    if "constant_weights" in codes:
        assert "IA201" in codes["constant_weights"]
    code, out, _ = run(capsys, *samples.values())
    assert f"{len(samples)} files" in out


SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_models"


def test_max_seconds_reports_what_was_not_covered(capsys):
    code, out, _ = run(capsys, SAMPLE_DIR / "mlp_he_sigmoid.onnx", "--max-seconds", "1e-9",
                       "--format", "json")
    fr = json.loads(out)["files"][0]
    assert fr["status"] == "partial"  # never a silent partial "clean"
    assert fr["skipped"] and all(s["reason"] == "time budget exhausted" for s in fr["skipped"])
    # a partial audit does not pass the gate silently: exit 3 ("audit incomplete")
    assert fr["findings"] == [] and code == 3
    code, out, _ = run(capsys, SAMPLE_DIR / "mlp_he_sigmoid.onnx", "--max-seconds", "1e-9")
    assert "skipped" in out and "clean" not in out.lower()
    code, _, _ = run(capsys, SAMPLE_DIR / "mlp_he_sigmoid.onnx", "--max-seconds", "1e-9",
                     "--allow-partial", "--format", "json")
    assert code == 0


def test_max_seconds_must_be_positive(capsys):
    code, _, err = run(capsys, SAMPLE_DIR / "mlp_he_sigmoid.onnx", "--max-seconds", "0")
    assert code == 2 and "--max-seconds" in err


def test_probe_adds_measurements_for_onnx(capsys):
    pytest.importorskip("onnxruntime")
    code, out, _ = run(capsys, SAMPLE_DIR / "deep_glorot_relu.onnx", "--probe", "--format", "json")
    fr = json.loads(out)["files"][0]
    assert any(note.startswith("probe:") for note in fr["notes"])
    assert fr["signal"] is not None


def test_an_analysis_bug_in_one_file_does_not_stop_the_others(capsys, monkeypatch):
    import initaudit.analysis.identify as identify_module

    calls = {"n": 0}
    real = identify_module.identify

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ZeroDivisionError("simulated bug")
        return real(*args, **kwargs)

    monkeypatch.setattr(identify_module, "identify", flaky)
    monkeypatch.delenv("INITAUDIT_DEBUG", raising=False)
    code, out, err = run(capsys, SAMPLE_DIR / "constant_weights.onnx",
                         SAMPLE_DIR / "mlp_he_sigmoid.onnx", "--format", "json", "--jobs", "1")
    files = json.loads(out)["files"]
    assert files[0]["status"] == "error" and "internal error" in files[0]["error"]
    assert files[1]["status"] == "ok" and files[1]["findings"][0]["code"] == "IA101"
    assert code == 2 and "Traceback" not in err


def test_exit_zero_never_hides_an_incomplete_audit(tmp_path, capsys):
    """--exit-zero turns findings into 0, never a partial audit (documented: "still 3")."""
    rng = np.random.default_rng(0)
    path = tmp_path / "w.npz"
    np.savez(path, **{"fc1.weight": np.full((64, 64), 0.5, np.float32),  # IA201 error
                      "fc2.weight": rng.normal(0, 0.1, (64, 64)).astype(np.float32),
                      "fc3.weight": np.ones((8, 8), np.complex64)})  # not decoded: partial
    code, out, _ = run(capsys, path, "--format", "json")
    fr = json.loads(out)["files"][0]
    assert fr["status"] == "partial" and fr["findings"] and code == 1
    code, _, _ = run(capsys, path, "--exit-zero", "--quiet")
    assert code == 3
    code, _, _ = run(capsys, path, "--exit-zero", "--allow-partial", "--quiet")
    assert code == 0


def test_api_audit_of_an_empty_list_is_an_empty_report():
    import initaudit

    assert initaudit.audit([]).files == []
