"""The shared accounting check (initaudit.accounting via engine.analyse): coverage, categorised
skips and the ok/partial verdict, whatever the loader did."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from initaudit.accounting import categorise, inventory_from_mapped
from initaudit.engine import AuditConfig, analyse, audit_path
from initaudit.model import (
    Convention,
    Layer,
    LoadedModel,
    Role,
    SkipReason,
    StoredTensor,
    WeightTensor,
    is_weight_like,
)
from initaudit.report import Report, Status

rng = np.random.default_rng(0)


def _kernel(name: str, shape: tuple[int, ...]) -> WeightTensor:
    values = rng.normal(0, np.sqrt(2 / shape[1]), shape).astype(np.float32)
    return WeightTensor(name=name, layer=name.split(".")[0], op="Linear", role=Role.KERNEL,
                        shape=shape, dtype="float32", load=lambda: values, fan_in=shape[1],
                        fan_out=shape[0], convention=Convention.TORCH, unit_axis=0)


def _model(*names: str) -> LoadedModel:
    layers = [Layer(name=n.split(".")[0], op="Linear", tensors=[_kernel(n, (32, 64))])
              for n in names]
    return LoadedModel(path="m.bin", format="test", layers=layers)


def _stored(name: str, shape: tuple[int, ...] = (32, 64), dtype: str = "float32") -> StoredTensor:
    return StoredTensor(name=name, shape=shape, dtype=dtype, nbytes=int(np.prod(shape)) * 4,
                        weight_like=is_weight_like(shape, dtype))


def test_everything_analysed_is_ok_and_complete() -> None:
    m = _model("fc1.weight", "fc2.weight")
    m.inventory = [_stored("fc1.weight"), _stored("fc2.weight"), _stored("fc1.bias", (32,))]
    r = analyse(m)
    assert r.status is Status.OK and not r.skipped
    c = r.coverage
    assert (c.weights_present, c.weights_analysed, c.tensors_present, c.tensors_analysed) == \
        (2, 2, 3, 2)
    assert c.complete and c.bytes_present == c.bytes_analysed == 2 * 32 * 64 * 4


def test_a_tensor_the_loader_forgot_makes_the_file_partial() -> None:
    m = _model("fc1.weight")
    m.inventory = [_stored("fc1.weight"), _stored("hidden.weight")]
    r = analyse(m)
    assert r.status is Status.PARTIAL
    assert r.skipped == [{"name": "hidden.weight", "category": "unmapped",
                          "reason": "stored in the file but not mapped to any layer: not analysed"}]
    assert (r.coverage.weights_present, r.coverage.weights_analysed) == (2, 1)
    assert not r.coverage.complete


def test_non_weight_tensors_left_unread_do_not_make_it_partial() -> None:
    m = _model("fc1.weight")
    m.inventory = [_stored("fc1.weight"), _stored("steps", (1,), "int64"),
                   _stored("ids", (4, 128), "int64")]
    assert analyse(m).status is Status.OK


def test_the_loaders_own_category_and_words_are_kept() -> None:
    m = _model("fc1.weight")
    m.inventory = [_stored("fc1.weight"),
                   StoredTensor("q.weight", (32, 64), "int8", 2048, True,
                                SkipReason.QUANTIZED_NOT_DECODED, "GPTQ int4 packed")]
    r = analyse(m)
    assert r.skipped == [{"name": "q.weight", "reason": "GPTQ int4 packed",
                          "category": "quantized-not-decoded"}]


def test_loader_skips_are_categorised_and_not_listed_twice() -> None:
    m = _model("fc1.weight")
    m.inventory = [_stored("fc1.weight"), _stored("big.weight")]
    m.skip("big.weight", "5000000000 bytes exceeds the per-tensor limit", SkipReason.TOO_LARGE)
    m.skipped.append(("old.weight", "safetensors dtype C64 is not supported"))  # legacy 2-tuple
    r = analyse(m)
    cats = {s["name"]: s["category"] for s in r.skipped}
    assert cats == {"big.weight": "too-large", "old.weight": "unsupported-dtype"}
    assert r.status is Status.PARTIAL


def test_without_an_inventory_the_file_is_never_complete() -> None:
    m = _model("fc1.weight")
    r = analyse(m)
    assert r.status is Status.PARTIAL
    assert r.coverage.enumerated is False and r.coverage.complete is False
    assert (r.coverage.weights_present, r.coverage.weights_analysed) == (1, 1)
    assert any("does not enumerate" in n for n in r.notes)


def test_time_budget_and_unreadable_tensors_are_categorised() -> None:
    m = _model("fc1.weight", "fc2.weight")
    m.inventory = inventory_from_mapped(m)
    r = analyse(m, AuditConfig(max_seconds=0.0, workers=1))
    assert r.status is Status.PARTIAL
    assert {s["category"] for s in r.skipped} == {"time-budget"}
    assert r.coverage.weights_analysed == 0


def test_a_packed_tensor_counts_once_and_only_when_every_part_was_read() -> None:
    whole = rng.normal(0, 0.05, (16, 48)).astype(np.float32)
    parts = [WeightTensor(name=f"qkv[{p}]", layer="attn", op="Attention", role=Role.KERNEL,
                          shape=(16, 16), dtype="float32",
                          load=lambda i=i: whole[:, 16 * i:16 * (i + 1)], fan_in=16, fan_out=16,
                          stored="qkv") for i, p in enumerate("qkv")]
    m = LoadedModel(path="m", format="test", layers=[Layer("attn", "Attention", parts)],
                    inventory=[_stored("qkv", (16, 48))])
    r = analyse(m)
    assert r.status is Status.OK and r.coverage.weights_analysed == 1


@pytest.mark.parametrize(("reason", "category"), [
    ("external-data path '../x' escapes the model folder; not read", SkipReason.UNSAFE),
    ("object array (pickled Python objects): never loaded", SkipReason.UNSAFE),
    ("element type int4 is not supported", SkipReason.UNSUPPORTED_DTYPE),
    ("stores 10 bytes but its shape [4, 4] needs 64", SkipReason.UNREADABLE),
    ("something new", SkipReason.OTHER),
])
def test_categorise_legacy_reasons(reason: str, category: SkipReason) -> None:
    assert categorise("x", reason) is category


def test_safetensors_enumerates_every_entry(tmp_path: Path) -> None:
    st = pytest.importorskip("safetensors.numpy")
    path = tmp_path / "m.safetensors"
    st.save_file({"fc.weight": rng.normal(0, 0.1, (8, 16)).astype(np.float32),
                  "fc.bias": np.zeros(8, np.float32),
                  "bn.num_batches_tracked": np.zeros((), np.int64)}, path)
    r = audit_path(path)
    assert r.status is Status.OK
    assert (r.coverage.tensors_present, r.coverage.weights_present) == (3, 1)


def test_npz_unread_member_keeps_the_file_partial(tmp_path: Path) -> None:
    path = tmp_path / "m.npz"
    np.savez(path, **{"fc.weight": rng.normal(0, 0.1, (8, 16)),
                      "meta": np.array([{"a": 1}], dtype=object)})
    r = audit_path(path)
    assert r.status is Status.PARTIAL
    assert {s["name"]: s["category"] for s in r.skipped} == {"meta": "unsafe"}
    assert r.coverage.weights_analysed == 1


def test_json_report_carries_coverage_and_summary_counts() -> None:
    m = _model("fc1.weight")
    m.inventory = [_stored("fc1.weight"), _stored("lost.weight")]
    report = Report(files=[analyse(m)])
    data = json.loads(json.dumps(report.to_dict()))
    f = data["files"][0]
    assert f["coverage"]["weights_present"] == 2 and f["coverage"]["complete"] is False
    assert data["summary"]["partial_files"] == 1
    assert (data["summary"]["weights_present"], data["summary"]["weights_analysed"]) == (2, 1)


def test_a_tensor_whose_analysis_fails_names_the_real_error() -> None:
    """The per-tensor work cleans up in `finally`; a failure inside the fused pass must surface as
    itself (one line, exit 2), not as an error of the clean-up (it was an UnboundLocalError)."""
    import numpy as np

    from initaudit.engine import AuditConfig, analyse
    from initaudit.model import Layer, LoadedModel, Role, WeightTensor

    weird = np.array([["a", "b"], ["c", "d"]], dtype=object)  # no float view: the pass raises
    tensor = WeightTensor(name="fc.weight", layer="fc", op="Linear", role=Role.KERNEL, shape=(2, 2),
                          dtype="float32", load=lambda: weird, fan_in=2, fan_out=2)
    model = LoadedModel(path="<test>", format="in-memory", layers=[Layer("fc", "Linear", [tensor])])
    try:
        report = analyse(model, AuditConfig())
    except Exception as exc:  # noqa: BLE001 - the engine's caller turns this into one line
        assert not isinstance(exc, UnboundLocalError), exc
    else:
        assert report.status.value in ("partial", "error")
