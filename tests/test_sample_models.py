"""Every sample model produces exactly the findings written beside it (sample_models/EXPECTED.md),
for the committed files and for freshly regenerated ones; clean ones have no error or warning."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from initaudit.engine import audit_path

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def expected() -> dict[str, Counter]:
    table: dict[str, Counter] = {}
    for line in (SAMPLES / "EXPECTED.md").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\|\s*`([\w.]+\.onnx)`\s*\|[^|]*\|\s*(.*?)\s*\|$", line)
        if not m:
            continue
        items = [] if m.group(2) in ("—", "-") else [s.strip() for s in m.group(2).split(";")]
        table[m.group(1)] = Counter(tuple(item.split()) for item in items)
    return table


def actual(path: Path) -> Counter:
    report = audit_path(path)
    assert report.error is None, report.error
    return Counter((f.severity.value, f.code, f.name, f.tensor or f.layer) for f in report.findings)


EXPECTED = expected()


def test_expectations_cover_every_sample_model():
    on_disk = {p.name for p in SAMPLES.glob("*.onnx")}
    assert on_disk == set(EXPECTED), "EXPECTED.md and sample_models/*.onnx disagree"
    assert len(EXPECTED) >= 15


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_sample_model(name: str):
    assert actual(SAMPLES / name) == EXPECTED[name]


def test_regenerated_samples_are_identical_and_give_the_same_findings(tmp_path: Path):
    sys.path.insert(0, str(SAMPLES))
    try:
        from make_samples import build_all
    finally:
        sys.path.remove(str(SAMPLES))
    written = build_all(tmp_path)
    for _name, path in written.items():
        committed = SAMPLES / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{path.name} is not reproducible"
    assert actual(written["mlp_he_sigmoid"]) == EXPECTED["mlp_he_sigmoid.onnx"]


def test_clean_models_have_no_error_or_warning():
    for name in ("mlp_relu_clean.onnx", "mlp_tanh_clean.onnx", "mlp_selu_clean.onnx",
                 "cnn_clean.onnx", "lstm_keras_like.onnx"):
        assert not [k for k in actual(SAMPLES / name) if k[0] in ("error", "warning")], name
