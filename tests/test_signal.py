"""Signal propagation: the per-layer prediction (analysis/signal.py), its JSON section, its
terminal chart, and the optional onnxruntime probe measuring the same figures."""

from __future__ import annotations

import math

import numpy as np
import pytest

import initaudit
from initaudit.analysis.signal import activation_moments, sparkline
from initaudit.model import Activation
from initaudit.model import ActivationKind as K

try:
    from onnx_builders import GraphBuilder
except ImportError:  # tests/ collected as a package
    from tests.onnx_builders import GraphBuilder

WIDTH, DEPTH = 256, 10


def _mlp(tmp_path, init: str, depth: int = DEPTH, act: str = "Relu", seed: int = 0):
    """A plain MLP in ONNX: depth x (MatMul + act), then a 10-way head."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder(in_dim=[1, WIDTH])
    y = g.x
    for i in range(depth):
        if init == "glorot":
            bound = math.sqrt(6.0 / (2 * WIDTH))
            w = rng.uniform(-bound, bound, (WIDTH, WIDTH))
        else:  # he
            w = rng.normal(0.0, math.sqrt(2.0 / WIDTH), (WIDTH, WIDTH))
        y = g.node(act, [g.linear(y, w, name=f"fc{i}")])
    y = g.linear(y, rng.normal(0, math.sqrt(1.0 / WIDTH), (WIDTH, 10)), name="head")
    g.output(y)
    return g.save(tmp_path / f"{init}_{act}.onnx")


def test_activation_moments_match_the_literature() -> None:
    relu, _ = activation_moments(Activation(K.RELU), 1.0)
    assert relu == pytest.approx(0.5, abs=1e-3)
    leaky, _ = activation_moments(Activation(K.LEAKY_RELU, 0.2), 2.0)
    assert leaky == pytest.approx(2.0 * (1 + 0.04) / 2, rel=1e-3)
    selu, selu_slope = activation_moments(Activation(K.SELU), 1.0)
    assert selu == pytest.approx(1.0, abs=2e-3)  # the self-normalising fixed point
    gelu, _ = activation_moments(Activation(K.GELU), 1.0)
    assert gelu == pytest.approx(0.425, abs=5e-3)
    sig, sig_slope = activation_moments(Activation(K.SIGMOID), 1e-4)
    assert sig == pytest.approx(0.25, abs=1e-3)  # its mean is 0.5: the signal never vanishes
    assert sig_slope == pytest.approx(1 / 16, rel=1e-2)  # the gradient does: slope 1/4 at 0
    tanh, _ = activation_moments(Activation(K.TANH), 1.0)
    assert 0.39 < tanh < 0.40  # E[tanh(z)^2] for z ~ N(0, 1)
    lin, lin_slope = activation_moments(None, 3.0)  # unknown counts as linear
    assert lin == pytest.approx(3.0, rel=1e-3) and lin_slope == pytest.approx(1.0, rel=1e-3)


def test_deep_glorot_relu_mlp_shows_the_predicted_decay(tmp_path) -> None:
    report = initaudit.audit(_mlp(tmp_path, "glorot")).files[0]
    sig = report.signal
    hidden = sig["layers"][:DEPTH]
    for i, layer in enumerate(hidden):
        # square Glorot keeps fan_in·Var(w) = 1, ReLU halves it: q = 0.5^(i+1)
        assert layer["forward_gain"] == pytest.approx(0.5, rel=0.05)
        assert layer["q_out"] == pytest.approx(0.5 ** (i + 1), rel=0.15)
    assert sig["forward_exit"] == "fc6"
    assert [f.code for f in report.findings if f.severity.value == "warning"] == ["IA601"]
    # the backward figure shrinks the same way towards the input
    assert hidden[0]["grad_in"] < hidden[-1]["grad_in"]


def test_he_relu_mlp_stays_in_the_band(tmp_path) -> None:
    report = initaudit.audit(_mlp(tmp_path, "he")).files[0]
    assert report.signal["forward_exit"] is None
    assert all(0.6 < layer["q_out"] < 1.6 for layer in report.signal["layers"][:DEPTH])
    assert not any(f.code == "IA601" for f in report.findings)


def test_residual_add_and_normalization_are_taken_into_account() -> None:
    from initaudit.analysis.signal import propagate
    from initaudit.engine import AuditConfig, analyse
    from tests.rules import chain_model, glorot_normal

    rng = np.random.default_rng(3)
    model = chain_model([glorot_normal(rng, 128, 128) for _ in range(6)])
    for layer in model.layers:
        layer.residual = True  # x + relu(W x): the skip path keeps the signal
    report = analyse(model, AuditConfig())
    assert report.signal["forward_exit"] is None
    assert all(layer["q_out"] >= 1.0 for layer in report.signal["layers"])
    normed = chain_model([glorot_normal(rng, 128, 128) * 0.01 for _ in range(6)],
                         normalized=range(6))
    assert propagate(normed, []) is None  # nothing analysed: nothing predicted
    report = analyse(normed, AuditConfig())
    assert all(layer["q_pre"] == 1.0 for layer in report.signal["layers"])


def test_sparkline_is_one_character_per_layer() -> None:
    line = sparkline([1.0, 0.1, 1e-3, 1e3, float("nan")])
    assert len(line) == 5 and line[-1] == "·"
    assert line[2] < line[1] < line[0] < line[3]


def test_human_report_shows_the_chart(tmp_path) -> None:
    from initaudit.reporters.human import render_signal

    report = initaudit.audit(_mlp(tmp_path, "glorot")).files[0]
    text = render_signal(report)
    assert "signal" in text and "fc6" in text and "0.0078" in text


# ---- the optional probe (onnxruntime) -------------------------------------------------------

@pytest.mark.frameworks
def test_probe_agrees_with_the_prediction_within_its_tolerance(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from initaudit.engine import AuditConfig, audit_path
    from initaudit.probe import TOLERANCE

    path = _mlp(tmp_path, "glorot")
    report = audit_path(path, AuditConfig(probe=True))
    probe = report.signal["probe"]
    assert probe["layers_compared"] == DEPTH
    assert probe["agrees"], probe["compared"]
    assert 1 / TOLERANCE <= probe["worst_ratio"] <= TOLERANCE
    measured = [layer["measured_std"] for layer in report.signal["layers"][:DEPTH]]
    # the measured std halves its square at every layer, as predicted
    for i, std in enumerate(measured):
        assert std ** 2 == pytest.approx(0.5 ** (i + 1), rel=0.3)
    assert any(note.startswith("probe: measured signal agrees") for note in report.notes)


@pytest.mark.frameworks
def test_probe_disagrees_when_the_prediction_is_wrong(tmp_path) -> None:
    """A hint that lies about the activation (tanh instead of ReLU) is caught by measuring."""
    pytest.importorskip("onnxruntime")
    from initaudit.engine import AuditConfig, analyse
    from initaudit.loaders import LoadOptions, load
    from initaudit.probe import probe_signal

    path = _mlp(tmp_path, "he", depth=6)
    model = load(str(path), LoadOptions())
    for layer in model.layers[:6]:
        layer.activation = Activation(K.LINEAR)  # pretend there is no ReLU
    report = analyse(model, AuditConfig())
    summary = probe_signal(path, model, report.signal)
    assert not summary["agrees"] and summary["worst_ratio"] < 0.1


@pytest.mark.frameworks
def test_probe_on_an_unreadable_or_graphless_file_says_why(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    from initaudit.engine import AuditConfig, audit_path

    probe = AuditConfig(probe=True)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    assert audit_path(bad, probe).status.value == "error"
    npz = tmp_path / "w.npz"
    np.savez(npz, **{"fc.weight": np.random.default_rng(0).normal(0, 0.1, (32, 32))})
    report = audit_path(npz, probe)
    assert any(note.startswith("probe:") for note in report.notes)


@pytest.mark.frameworks
def test_a_deep_stack_at_n001_is_not_excused_as_torchvisions_classifier_default(tmp_path) -> None:
    """N(0, 0.01) is torchvision's default for its classifier block only; a deep ReLU stack drawn
    that way elsewhere is the textbook vanishing signal and keeps IA601's warning (review)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    layers: list = []
    for _ in range(8):
        layers += [torch.nn.Linear(256, 256), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(256, 10))
    for layer in model:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, 0, 0.01)
    path = tmp_path / "deep.onnx"
    torch.onnx.export(model, torch.randn(1, 256), str(path), dynamo=False)
    from initaudit.engine import audit_path

    report = audit_path(path)
    assert [(f.code, f.severity.value) for f in report.findings if f.code == "IA601"] == [
        ("IA601", "warning")]


@pytest.mark.parametrize("kind", [K.SIGMOID, K.SILU, K.GELU])
def test_closed_form_sigmoid_and_ndtr_give_scipys_moments(kind: K) -> None:
    """The activations that used scipy.special (expit, ndtr) use closed forms now (no scipy
    import at start-up): the propagation moments agree with scipy's to 1e-6 relative, far
    inside the 1e-2..1e2 band's margins, so no signal verdict moves."""
    special = pytest.importorskip("scipy.special")
    from initaudit.analysis import signal

    x = np.linspace(-40.0, 40.0, 20001)
    np.testing.assert_allclose(signal._sigmoid(x), special.expit(x), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(signal._ndtr(x), special.ndtr(x), rtol=2e-7, atol=1e-12)
    phi_new = signal._phi(kind, None)
    ref = {K.SIGMOID: special.expit, K.SILU: lambda z: z * special.expit(z),
           K.GELU: lambda z: z * special.ndtr(z)}[kind]
    for q in (1e-4, 0.01, 1.0, 7.3, 400.0):
        z = math.sqrt(q) * signal._GRID
        h = 1e-4 * math.sqrt(q)
        pairs = [(phi_new(z), ref(z)),
                 ((phi_new(z + h) - phi_new(z - h)) / (2 * h), (ref(z + h) - ref(z - h)) / (2 * h))]
        for new, old in pairs:  # forward and backward moments
            assert float(np.sum(new * new * signal._PDF)) == pytest.approx(
                float(np.sum(old * old * signal._PDF)), rel=1e-6)
