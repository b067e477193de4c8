"""The human and JSON reporters, on hand-built reports (no checkpoint needed)."""

from __future__ import annotations

import inspect
import io
import json
import re

import pytest

from initaudit.engine import AuditConfig
from initaudit.model import SkippedTensor, SkipReason
from initaudit.report import (
    Candidate,
    FileReport,
    Finding,
    Report,
    SchemeResult,
    Severity,
    Status,
    TensorReport,
    TensorStats,
)
from initaudit.reporters import REPORTERS, formats, get_reporter

ANSI = re.compile(r"\x1b\[[0-9;]*m")
LONG_MESSAGE = ("He-scaled kernel (std 0.0504 = sqrt(2/784)) feeds a sigmoid, which saturates: use "
                "Glorot (xavier) init with gain 1 so that pre-activations stay in the linear range "
                "of the sigmoid and gradients do not vanish in the first epochs of training")


def _stats(std: float, lo: float, hi: float, size: int = 100, kurt: float = 0.0) -> TensorStats:
    return TensorStats(n=size, size=size, mean=0.0, std=std, min=lo, max=hi, excess_kurtosis=kurt)


def sample_report() -> Report:
    """Four files: one partial with findings, one unreadable, one clean, one partial and quiet."""
    he = SchemeResult(rule="he", distribution="normal", mode="fan_in", gain=2 ** 0.5,
                      expected_std=0.0505, confidence=0.97, label="kaiming_normal(fan_in)",
                      evidence={"scale_ci": [0.049, 0.052], "ratio": float("nan")})
    ambiguous = SchemeResult(
        rule="torch_default", distribution="uniform", mode="fan_in", gain=1 / 3 ** 0.5,
        expected_std=0.0361, confidence=0.62, label="torch default U(±1/sqrt(fan_in))",
        alternatives=(Candidate("lecun", "uniform", "fan_in", 0.577, 0.0361, "lecun_uniform x 0.58"),))
    fc1 = TensorReport("fc1.weight", "fc1", "Gemm", "kernel", (256, 784), "float32", 784, 256,
                       "sigmoid", "graph", _stats(0.0504, -0.23, 0.24, 200704), he)
    fc2 = TensorReport("fc2.weight", "fc2", "Gemm", "kernel", (10, 256), "float32", 256, 10,
                       None, None, _stats(0.0361, -0.0625, 0.0625, 2560, -1.2), ambiguous)
    bias0 = TensorReport("fc1.bias", "fc1", "Gemm", "bias", (256,), "float32", None, None, None,
                         None, _stats(0.0, 0.0, 0.0, 256, float("nan")), None)
    bias1 = TensorReport("fc2.bias", "fc2", "Gemm", "bias", (10,), "float32", None, None, None,
                         None, _stats(0.03, -0.06, 0.06, 10, -1.2), None)
    skipped = TensorReport("onnx::MatMul_7", "/fc3/MatMul", "MatMul", "kernel", (10, 10), "float16",
                           10, 10, None, None, None, None, skipped="external data file missing")
    findings = [
        Finding("IA101", "he-before-saturating", Severity.ERROR, 0.97, LONG_MESSAGE,
                tensor="fc1.weight", layer="fc1", evidence={"ratio": 1.41}),
        Finding("IA401", "unrecognized-init", Severity.INFO, 0.6,
                "could not tell torch default from lecun_uniform", tensor="fc2.weight", layer="fc2"),
    ]
    partial = FileReport("models/mlp_he_sigmoid.onnx", "onnx", Status.PARTIAL, None,
                         [fc1, fc2, bias0, bias1, skipped], findings,
                         [SkippedTensor("onnx::MatMul_7", "external data file missing",
                                         SkipReason.UNREADABLE)],
                         ["activation unknown for 1 layer(s) (fc2)"], "pytorch")
    unreadable = FileReport("bad.onnx", None, Status.ERROR, "truncated protobuf (file cut short?)")
    clean = FileReport("ok.npz", "npz", Status.OK, None, [fc2, bias0], [], [], [], None)
    quiet_partial = FileReport("part.npz", "npz", Status.PARTIAL, None, [fc2], [],
                               [SkippedTensor("x", "object array", SkipReason.UNSAFE)], [], None)
    return Report([partial, unreadable, clean, quiet_partial])


def render(result: Report, fmt: str = "human", *, color: bool = False, **kw) -> str:
    stream = io.StringIO()
    get_reporter(fmt)(result, stream, config=AuditConfig(), color=color, **kw)
    return stream.getvalue()


def file_block(text: str, path: str) -> str:
    """The part of a human report about one file (from its header rule to the next one)."""
    start = text.index(path + " ─")
    nxt = re.search(r"\n\n\S+ ─", text[start + 1:])
    return text[start:start + 1 + nxt.start()] if nxt else text[start:]


# ---------------------------------------------------------------------------------- registry


def test_registry_lists_human_and_json_and_loads_lazily():
    assert formats()[:2] == ["human", "json"]
    assert set(REPORTERS) >= {"human", "json"}
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        get_reporter("xml")


@pytest.mark.parametrize("fmt", ["human", "json"])
def test_every_reporter_has_the_same_signature_and_a_sample_in_its_docstring(fmt):
    fn = get_reporter(fmt)
    params = inspect.signature(fn).parameters
    assert list(params)[:2] == ["result", "stream"]
    for name in ("config", "color", "verbose", "quiet"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    doc = inspect.getmodule(fn).__doc__
    assert "Sample" in doc


# ---------------------------------------------------------------------------------- human


def test_human_shows_table_findings_notes_and_summary():
    out = render(sample_report())
    block = file_block(out, "models/mlp_he_sigmoid.onnx")
    assert "onnx · framework pytorch · partial · 4 tensors analysed, 1 skipped" in block
    for header in ("tensor", "shape", "fan in→out", "activation", "init scheme", "std obs / exp", "conf"):
        assert header in block
    assert re.search(r"fc1\.weight\s+256×784\s+784 → 256\s+sigmoid\s+kaiming_normal\(fan_in\)\s+"
                     r"0\.0504 / 0\.0505\s+97%", block)
    assert "≈ lecun_uniform x 0.58" in block  # ambiguous scheme: its alternatives are named
    assert re.search(r"fc2\.weight\s+10×256\s+256 → 10\s+unknown", block)  # unknown activation
    assert "onnx::MatMul_7 (/fc3/MatMul)" in block and "skipped" in block
    # biases are summarised, not listed
    assert "fc1.bias" not in block
    assert "+ 2 biases not in the table (1 constant, 1 random); --verbose lists them" in block
    # findings: severity CODE name tensor: message, wrapped under the message column
    assert re.search(r"✗ error +IA101 he-before-saturating fc1\.weight: He-scaled kernel", block)
    assert re.search(r"i info +IA401 unrecognized-init fc2\.weight: could not tell", block)
    assert "(confidence 60%)" in block
    assert "skipped onnx::MatMul_7: external data file missing" in block
    assert "activation unknown for 1 layer(s) (fc2)" in block
    assert out.rstrip().endswith("4 files, 1 error, 0 warnings, 1 info, 1 unreadable file · "
                                 "7 tensors analysed, 2 skipped · 2 partial files")


def test_human_wraps_long_messages_within_a_stable_width():
    out = render(sample_report())
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120
    assert all(line == line.rstrip() for line in lines)  # no padding left by the tables
    wrapped = [line for line in lines if "gradients do not vanish" in line]
    assert wrapped and wrapped[0].startswith(" " * 10)  # continuation aligned under the message


def test_human_never_says_clean_for_a_partial_file():
    out = render(sample_report())
    partial = file_block(out, "part.npz")
    assert "no findings in the 1 analysed tensor; 1 skipped (see above)" in partial
    assert "skipped x: object array" in partial
    assert "✓" not in partial
    for block in (partial, file_block(out, "models/mlp_he_sigmoid.onnx")):
        assert "clean" not in block.lower() and "no issues" not in block.lower()
    assert "✓ no findings in 2 analysed tensors" in file_block(out, "ok.npz")


def test_human_partial_without_skipped_tensors_says_part_was_left_out():
    fr = FileReport("x.keras", "keras", Status.PARTIAL, None, [], [], [], ["Lambda layer not run"])
    out = render(Report([fr]))
    assert "part of the file was left out" in out
    assert "✓" not in out


def test_human_unreadable_file_gives_its_reason():
    block = file_block(render(sample_report()), "bad.onnx")
    assert "✗ could not be read: truncated protobuf (file cut short?)" in block


def test_human_verbose_lists_biases_and_activation_sources():
    out = render(sample_report(), verbose=True)
    block = file_block(out, "models/mlp_he_sigmoid.onnx")
    assert re.search(r"fc1\.bias bias\s+256\s.*constant 0", block)
    assert re.search(r"fc2\.bias bias\s+10\s.*mean 0", block)
    assert "sigmoid (graph)" in block
    assert "not in the table" not in block


def test_human_quiet_prints_only_findings_and_summary():
    out = render(sample_report(), quiet=True)
    assert "init scheme" not in out and "fc2.weight  " not in out
    assert "IA101 he-before-saturating fc1.weight" in out
    assert "bad.onnx: could not be read: truncated protobuf" in out
    assert "part.npz: no findings in the 1 analysed tensor; 1 skipped (run without --quiet" in out
    assert "ok.npz" not in out
    assert out.rstrip().splitlines()[-1].startswith("4 files, 1 error")


def test_human_colour_only_when_asked():
    assert not ANSI.search(render(sample_report(), color=False))
    coloured = render(sample_report(), color=True)
    assert ANSI.search(coloured)
    assert "he-before-saturating" in ANSI.sub("", coloured)


def test_human_prints_bracketed_names_literally():
    st = _stats(0.1, -0.3, 0.3)
    t = TensorReport("layers[0].weight", "layers[0]", "Dense", "kernel", (4, 4), "float32", 4, 4,
                     "[bold]relu", "config", st, None)
    f = Finding("IA201", "constant-weights", Severity.ERROR, 1.0, "values [red]x[/red] equal",
                tensor="layers[0].weight")
    out = render(Report([FileReport("m[1].h5", "keras-h5", Status.OK, None, [t], [f])]))
    assert "layers[0].weight" in out and "[bold]relu" in out and "values [red]x[/red] equal" in out
    assert "m[1].h5" in out


def test_human_falls_back_to_ascii_on_streams_that_cannot_encode_unicode():
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    get_reporter("human")(sample_report(), stream, config=AuditConfig(), color=False)
    text = raw.getvalue().decode("ascii")
    assert re.search(r"x error +IA101", text) and "784 -> 256" in text


def test_human_file_without_tensors():
    out = render(Report([FileReport("empty.npz", "npz", Status.OK)]))
    assert "no weight tensors found" in out
    assert "1 file, 0 errors, 0 warnings, 0 infos · 0 tensors analysed" in out


# ---------------------------------------------------------------------------------- json


def test_json_is_report_to_dict_plus_config_and_deterministic():
    result = sample_report()
    text = render(result, "json")
    data = json.loads(text)
    expected = result.to_dict()
    assert {k: data[k] for k in expected} == json.loads(json.dumps(expected))
    assert data["config"] == {"fail_on": "error", "select": [], "ignore": [], "min_confidence": 0.0,
                              "activation_hints": []}
    assert text == render(sample_report(), "json")
    assert text.endswith("}\n")


def test_json_spells_non_finite_numbers_as_strings():
    data = json.loads(render(sample_report(), "json"))
    tensors = data["files"][0]["tensors"]
    assert tensors[2]["stats"]["excess_kurtosis"] == "nan"
    assert tensors[0]["scheme"]["evidence"]["ratio"] == "nan"
    assert tensors[1]["activation"] is None  # unknown stays null, never guessed


def test_json_survives_numpy_values_in_evidence():
    np = pytest.importorskip("numpy")
    f = Finding("IA201", "constant-weights", Severity.ERROR, 1.0, "m",
                evidence={"arr": np.array([1.0, np.nan]), "f32": np.float32(0.5), "n": np.int64(3)})
    data = json.loads(render(Report([FileReport("a", "npz", Status.OK, findings=[f])]), "json"))
    assert data["files"][0]["findings"][0]["evidence"] == {"arr": [1.0, "nan"], "f32": 0.5, "n": 3}
