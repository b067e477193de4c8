"""``initaudit diff A B``: two checkpoints of one model, matched tensor by tensor.

The training case is real: a torch MLP with one frozen layer (requires_grad=False) and one dead
layer (a bias of -100 before a ReLU: every unit outputs 0, no gradient passes) trained a few SGD
steps on random data, saved with torch.save before and after.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from test_html_report import check_html

from initaudit.cli import main
from initaudit.diff import (
    UNCHANGED_REL,
    ChangeStatus,
    DiffFindingKind,
    diff_paths,
    relative_change,
)

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    torch = pytest.importorskip("torch")
    nn = torch.nn
    out = tmp_path_factory.mktemp("diff")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                          nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    with torch.no_grad():
        model[2].bias.fill_(-100.0)  # dead: layer 2's ReLU outputs only zeros
    for p in model[0].parameters():
        p.requires_grad_(False)  # frozen
    torch.save(model.state_dict(), out / "fresh.pt")
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for _ in range(5):
        x, y = torch.randn(64, 16), torch.randn(64, 4)
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(model.state_dict(), out / "trained.pt")
    paths = {"fresh": out / "fresh.pt", "trained": out / "trained.pt"}
    pytest.importorskip("onnx")
    model.eval()
    torch.onnx.export(model, (torch.randn(1, 16),), str(out / "trained.onnx"), dynamo=False)
    paths["onnx"] = out / "trained.onnx"
    return paths


@pytest.mark.frameworks
def test_frozen_and_dead_layers_are_found_after_training(trained):
    report = diff_paths(trained["fresh"], trained["trained"])
    by_name = {c.name: c for c in report.changes}
    assert {c.matched_by for c in report.changes} == {"name"}
    # frozen (0), dead (2) and the layer fed only by dead units (4.weight) did not move
    for name in ("0.weight", "0.bias", "2.weight", "2.bias", "4.weight"):
        assert by_name[name].status is ChangeStatus.UNCHANGED, name
        assert by_name[name].relative_change == 0.0
    for name in ("4.bias", "6.weight", "6.bias"):
        assert by_name[name].status is ChangeStatus.CHANGED, name
        assert by_name[name].relative_change > 1e-4
    kinds = {f.tensor: f.kind for f in report.findings}
    assert kinds == {"0.weight": DiffFindingKind.DID_NOT_MOVE,
                     "2.weight": DiffFindingKind.DID_NOT_MOVE,
                     "4.weight": DiffFindingKind.DEAD_INPUT}
    assert report.exit_code() == 1
    assert by_name["0.weight"].scheme_a == by_name["0.weight"].scheme_b  # same values, same scheme


@pytest.mark.frameworks
def test_two_exports_of_one_model_report_no_change(trained, capsys):
    report = diff_paths(trained["trained"], trained["onnx"])
    assert report.a.format == "pytorch-zip" and report.b.format == "onnx"
    assert report.changes and all(c.status is ChangeStatus.UNCHANGED for c in report.changes)
    assert report.findings == [] and report.exit_code() == 0
    code = main(["diff", str(trained["trained"]), str(trained["onnx"])])
    out = capsys.readouterr().out
    assert code == 0 and "0 changed, 8 unchanged" in out


@pytest.mark.frameworks
def test_cli_json_html_and_exit_codes(trained, capsys, tmp_path):
    code = main(["diff", str(trained["fresh"]), str(trained["trained"]), "--format", "json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["summary"]["unchanged"] == 5 and data["summary"]["findings"] == 3
    assert {f["kind"] for f in data["findings"]} == {"did-not-move", "dead-input"}
    row = next(t for t in data["tensors"] if t["name_a"] == "6.weight")
    assert row["status"] == "changed" and row["relative_change"] > 0
    page = tmp_path / "diff.html"
    code = main(["diff", str(trained["fresh"]), str(trained["trained"]), "-f", "html", "-o",
                 str(page)])
    assert code == 1
    text = page.read_text(encoding="utf-8")
    check_html(text)
    assert text.count("did-not-move") >= 2 and 'class="changes"' in text
    assert main(["diff", str(trained["fresh"]), str(trained["trained"]), "--exit-zero"]) == 0
    capsys.readouterr()
    # frozen on purpose: layer 0 is not a finding any more, the dead layers still are
    code = main(["diff", str(trained["fresh"]), str(trained["trained"]), "-f", "json",
                 "--frozen", "0.*"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1 and {f["tensor"] for f in data["findings"]} == {"2.weight", "4.weight"}
    code = main(["diff", str(trained["fresh"]), str(trained["trained"]), "-f", "json",
                 "--frozen", "0", "--frozen", "2", "--frozen", "4"])
    assert code == 0 and json.loads(capsys.readouterr().out)["findings"] == []


@pytest.mark.frameworks
def test_export_with_renamed_transposed_weights_matches_by_position(tmp_path, capsys):
    """A bias-free Linear applied to a 3-D input is exported by torch as a MatMul whose
    initializer is the transposed weight named onnx::MatMul_N: matched by position, compared
    transposed, unchanged."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(), nn.Linear(32, 4, bias=False))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    torch.onnx.export(model, (torch.randn(3, 5, 16),), str(tmp_path / "m.onnx"), dynamo=False)
    report = diff_paths(tmp_path / "m.pt", tmp_path / "m.onnx")
    assert [(c.name_a, c.matched_by, c.transposed, c.status) for c in report.changes] == [
        ("0.weight", "position", True, ChangeStatus.UNCHANGED),
        ("2.weight", "position", True, ChangeStatus.UNCHANGED)]
    assert all(c.name_b.startswith("onnx::MatMul") for c in report.changes)
    assert report.findings == [] and report.exit_code() == 0
    # and a real change after the export is seen through the renaming
    with torch.no_grad():
        model[2].weight.mul_(1.5)
    torch.save(model.state_dict(), tmp_path / "m2.pt")
    changed = diff_paths(tmp_path / "m.onnx", tmp_path / "m2.pt")
    rel = {c.name_b: c.relative_change for c in changed.changes}
    assert rel["0.weight"] == 0.0 and rel["2.weight"] == pytest.approx(0.5, rel=1e-6)


def test_unreadable_input_and_bad_format_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    assert main(["diff", str(bad), str(SAMPLES / "mlp_relu_clean.onnx")]) == 2
    err = capsys.readouterr().err
    assert "bad.pt" in err and "Traceback" not in err
    assert main(["diff", str(SAMPLES / "mlp_relu_clean.onnx"),
                 str(SAMPLES / "mlp_relu_clean.onnx"), "--format", "xml"]) == 2
    capsys.readouterr()


def test_renamed_and_transposed_tensors_match_by_position(tmp_path):
    """Names differ (an export renamed them) and one kernel is stored transposed: position and
    shape still pair them; one kernel changed, one did not, one was added."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.1, (32, 16)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (8, 32)).astype(np.float32)
    np.savez(tmp_path / "a.npz", **{"fc1.weight": w1, "fc2.weight": w2})
    w2b = w2 + np.float32(0.01)
    np.savez(tmp_path / "b.npz", **{"layer_a/kernel": w1.T.copy(), "layer_b/kernel": w2b.T.copy(),
                                    "extra/kernel": rng.normal(size=(4, 4)).astype(np.float32)})
    report = diff_paths(tmp_path / "a.npz", tmp_path / "b.npz")
    pairs = {(c.name_a, c.name_b): c for c in report.changes}
    first = next(c for c in report.changes if c.name_a == "fc1.weight")
    second = next(c for c in report.changes if c.name_a == "fc2.weight")
    assert first.matched_by == "position" and first.status is ChangeStatus.UNCHANGED
    assert first.transposed or first.shape_a == first.shape_b
    assert second.status is ChangeStatus.CHANGED
    expected = np.linalg.norm(np.full(w2.shape, 0.01)) / np.linalg.norm(w2.astype(np.float64))
    assert second.relative_change == pytest.approx(expected, rel=1e-3)
    assert any(c.status is ChangeStatus.ADDED and c.name_b == "extra.kernel"
               for c in pairs.values())
    # fc1 did not move while fc2 did: a finding
    assert [f.tensor for f in report.findings] == ["fc1.weight"]


def test_reshaped_and_removed(tmp_path):
    np.savez(tmp_path / "a.npz", w=np.ones((4, 6), np.float32), gone=np.ones((3, 5), np.float32))
    np.savez(tmp_path / "b.npz", w=np.ones((2, 12), np.float32))
    report = diff_paths(tmp_path / "a.npz", tmp_path / "b.npz")
    status = {c.name: c.status for c in report.changes}
    assert status == {"w": ChangeStatus.RESHAPED, "gone": ChangeStatus.REMOVED}
    assert report.findings == []  # nothing compared changed: no "did not train" claim


def test_relative_change_edge_cases():
    a = np.array([3.0, 4.0], np.float32)
    assert relative_change(a, a) == (0.0, 0.0)
    assert relative_change(a, a * 2)[0] == pytest.approx(1.0)
    assert relative_change(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert math.isinf(relative_change(np.zeros(3), np.ones(3))[0])
    nan = np.array([np.nan, 1.0])
    assert relative_change(nan, nan)[0] == 0.0  # the same NaN on both sides is no change
    assert relative_change(a, a + np.float32(1e-7) * a)[0] <= UNCHANGED_REL * 2
    big = np.arange(5_000_000, dtype=np.float32)  # more than one chunk
    rel, max_abs = relative_change(big, big + 1)
    assert rel == pytest.approx(math.sqrt(big.size / float(np.dot(big.astype(np.float64),
                                                                   big.astype(np.float64)))))
    assert max_abs == 1.0
