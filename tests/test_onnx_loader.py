"""The ONNX loader: fans per op, activation walking, tensor decoding, external-data safety,
bad files, real torch exports and the sample-model generator."""

from __future__ import annotations

import builtins
import importlib.util
import io
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from initaudit.loaders import LoadOptions, detect_format
from initaudit.loaders import load as load_any
from initaudit.loaders.onnx import from_proto, load
from initaudit.model import ActivationKind, Layer, LoadedModel, LoadError, Role

try:
    from onnx_builders import GraphBuilder, external_tensor, mlp
except ImportError:  # tests/ collected as a package
    from tests.onnx_builders import GraphBuilder, external_tensor, mlp

K = ActivationKind
REPO = Path(__file__).resolve().parents[1]
rng = np.random.default_rng(0)


def _load(g: GraphBuilder, tmp_path: Path, check: bool = True) -> LoadedModel:
    return load(g.save(tmp_path / "m.onnx", check=check), "onnx", LoadOptions())


def _layer(model: LoadedModel, name: str) -> Layer:
    layer = model.layer(name)
    assert layer is not None, [lay.name for lay in model.layers]
    return layer


def _w(*shape: int) -> np.ndarray:
    return rng.normal(0, 0.1, shape)


# ----------------------------------------------------------------------------- fans per op

def test_matmul_weight_is_in_out(tmp_path: Path) -> None:
    g = GraphBuilder(12)
    y = g.linear(g.x, _w(12, 5), np.zeros(5), name="fc1")
    g.output(y)
    m = _load(g, tmp_path)
    layer = _layer(m, "fc1")
    k = layer.kernel
    assert (k.name, k.role, k.shape, k.fan_in, k.fan_out, k.unit_axis) == \
        ("fc1.weight", Role.KERNEL, (12, 5), 12, 5, 1)
    assert k.convention.value == "onnx" and layer.op == "MatMul"
    assert [t.role for t in layer.tensors] == [Role.KERNEL, Role.BIAS]
    assert m.framework == "pytorch" and m.has_graph


@pytest.mark.parametrize("trans_b, shape, fans, unit", [(1, (5, 12), (12, 5), 0),
                                                        (0, (12, 5), (12, 5), 1)])
def test_gemm_trans_b(tmp_path: Path, trans_b: int, shape: tuple, fans: tuple, unit: int) -> None:
    g = GraphBuilder(12)
    y = g.linear(g.x, _w(*shape), np.zeros(5), name="head", kind="gemm_t" if trans_b else "gemm")
    g.output(y)
    layer = _layer(_load(g, tmp_path), "head")
    assert (layer.kernel.fan_in, layer.kernel.fan_out) == fans
    assert layer.kernel.unit_axis == unit
    assert layer.tensors[1].role is Role.BIAS


def test_gemm_trans_a_does_not_change_weight_layout(tmp_path: Path) -> None:
    g = GraphBuilder((12, 1))
    y = g.node("Gemm", [g.x, g.init("fc.weight", _w(5, 12))], name="/fc/Gemm", transA=1, transB=1)
    g.output(y)
    k = _layer(_load(g, tmp_path), "fc").kernel
    assert (k.fan_in, k.fan_out) == (12, 5)


def test_transposed_weight_fans_follow_the_layout_the_op_sees(tmp_path: Path) -> None:
    g = GraphBuilder(12)
    wt = g.node("Transpose", [g.init("fc.weight", _w(5, 12))], name="/fc/Transpose", perm=[1, 0])
    y = g.node("MatMul", [g.x, wt], name="/fc/MatMul")
    g.output(y)
    k = _layer(_load(g, tmp_path), "fc").kernel
    assert k.shape == (5, 12)
    assert (k.fan_in, k.fan_out, k.unit_axis) == (12, 5, 0)
    assert any("Transpose" in n for n in k.notes)


@pytest.mark.parametrize("group, wshape, fans, note", [
    (1, (8, 4, 3, 3), (36, 72), None),
    (2, (8, 2, 3, 3), (18, 72), "grouped"),
    (4, (4, 1, 3, 3), (9, 36), "depthwise"),
])
def test_conv_fans_groups_and_depthwise(tmp_path: Path, group: int, wshape: tuple, fans: tuple,
                                        note: str | None) -> None:
    g = GraphBuilder((1, 4, 8, 8))
    y = g.node("Conv", [g.x, g.init("conv.weight", _w(*wshape)), g.init("conv.bias", np.zeros(wshape[0]))],
               name="/conv/Conv", group=group, kernel_shape=[3, 3])
    g.output(y)
    layer = _layer(_load(g, tmp_path), "conv")
    k = layer.kernel
    assert (k.fan_in, k.fan_out, k.unit_axis) == fans + (0,)
    assert layer.tensors[1].role is Role.BIAS
    if note is None:
        assert not k.notes
    else:
        assert any(note in n for n in k.notes)


def test_conv_transpose_fans_as_torch_reports_them(tmp_path: Path) -> None:
    g = GraphBuilder((1, 4, 8, 8))
    y = g.node("ConvTranspose", [g.x, g.init("up.weight", _w(4, 6, 3, 3))], name="/up/ConvTranspose")
    g.output(y)
    k = _layer(_load(g, tmp_path), "up").kernel
    assert (k.fan_in, k.fan_out, k.unit_axis) == (54, 36, 1)


def test_gather_with_weight_table_is_an_embedding(tmp_path: Path) -> None:
    g = GraphBuilder([1, 5], input_type=TensorProto.INT64)
    e = g.node("Gather", [g.init("emb.weight", _w(10, 8)), g.x], name="/emb/Gather")
    y = g.linear(e, _w(8, 3), name="fc")
    g.output(y)
    m = _load(g, tmp_path)
    k = _layer(m, "emb").kernel
    assert (k.role, k.fan_in, k.fan_out, k.unit_axis) == (Role.EMBEDDING, 8, 10, 0)
    assert _layer(m, "emb").activation.kind is K.LINEAR
    assert _layer(m, "fc").inputs == ["emb"]


def test_gather_with_constant_indices_is_not_an_embedding(tmp_path: Path) -> None:
    g = GraphBuilder(8)
    row = g.node("Gather", [g.init("table", _w(10, 8)), g.init("idx", np.array([1]), np.int64)],
                 name="/pick/Gather")
    y = g.node("Add", [g.x, row])
    g.output(y)
    m = _load(g, tmp_path)
    assert not m.layers
    assert [t.name for t in m.loose_tensors] == ["table"]


@pytest.mark.parametrize("op, gates", [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_ops(tmp_path: Path, op: str, gates: int) -> None:
    hidden, inp = 6, 5
    g = GraphBuilder((7, 1, inp))
    outs = g.node_outputs(op, [g.x, g.init("rnn.W", _w(1, gates * hidden, inp)),
                               g.init("rnn.R", _w(1, gates * hidden, hidden)),
                               g.init("rnn.B", np.zeros((1, 2 * gates * hidden)))],
                          2, name=f"/rnn/{op}", hidden_size=hidden)
    g.output(outs[1])
    layer = _layer(_load(g, tmp_path), "rnn")
    w, r, b = layer.tensors
    assert (w.role, w.fan_in, w.fan_out, w.unit_axis, w.gates) == (Role.KERNEL, inp, gates * hidden, 1, gates)
    assert (r.role, r.fan_in, r.fan_out, r.gates) == (Role.RECURRENT, hidden, gates * hidden, gates)
    assert r.matrix_shape == (gates * hidden, hidden)
    assert b.role is Role.BIAS
    assert layer.op == op and layer.activation.kind is K.TANH


def test_norm_ops_get_their_own_layer_with_roles(tmp_path: Path) -> None:
    g = GraphBuilder((1, 4, 6, 6))
    y = g.node("Conv", [g.x, g.init("conv.weight", _w(4, 4, 3, 3))], name="/conv/Conv")
    y = g.node("BatchNormalization", [y] + [g.init(f"bn.{k}", v) for k, v in (
        ("weight", np.ones(4)), ("bias", np.zeros(4)), ("running_mean", np.zeros(4)),
        ("running_var", np.ones(4)))], name="/bn/BatchNormalization")
    y = g.node("Relu", [y])
    g.output(y)
    m = _load(g, tmp_path)
    bn = _layer(m, "bn")
    assert bn.op == "BatchNormalization"
    assert [t.role for t in bn.tensors] == [Role.NORM_SCALE, Role.NORM_SHIFT, Role.NORM_STAT, Role.NORM_STAT]
    conv = _layer(m, "conv")
    assert conv.activation.kind is K.RELU and conv.normalized


def test_prelu_slope_is_other(tmp_path: Path) -> None:
    g = GraphBuilder(4)
    y = g.linear(g.x, _w(4, 3), name="fc")
    y = g.node("PRelu", [y, g.init("act.weight", np.full(3, 0.25))], name="/act/PRelu")
    g.output(y)
    m = _load(g, tmp_path)
    assert _layer(m, "act").tensors[0].role is Role.OTHER
    act = _layer(m, "fc").activation
    assert act.kind is K.PRELU and act.param == pytest.approx(0.25)


# ----------------------------------------------------------------------------- activations

def _single(op: str, **attrs) -> Callable[[GraphBuilder, str], str]:
    return lambda g, x: g.node(op, [x], **attrs)


def _clip06(g: GraphBuilder, x: str) -> str:
    return g.node("Clip", [x, g.scalar(0.0), g.scalar(6.0)])


def _relu_min6(g: GraphBuilder, x: str) -> str:
    return g.node("Min", [g.node("Relu", [x]), g.scalar(6.0)])


def _erf_gelu(g: GraphBuilder, x: str) -> str:
    # torch's export: Div(x, sqrt2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(., 0.5)
    e = g.node("Erf", [g.node("Div", [x, g.const_node(1.4142135)])])
    a = g.node("Add", [e, g.const_node(1.0)])
    return g.node("Mul", [g.node("Mul", [x, a]), g.const_node(0.5)])


def _erf_gelu_half_first(g: GraphBuilder, x: str) -> str:
    half = g.node("Mul", [x, g.scalar(0.5)])
    e = g.node("Erf", [g.node("Mul", [x, g.scalar(0.70710678)])])
    return g.node("Mul", [half, g.node("Add", [g.scalar(1.0), e])])


def _tanh_gelu(g: GraphBuilder, x: str) -> str:
    cube = g.node("Pow", [x, g.scalar(3.0)])
    inner = g.node("Add", [x, g.node("Mul", [cube, g.scalar(0.044715)])])
    t = g.node("Tanh", [g.node("Mul", [inner, g.scalar(0.7978845608)])])
    return g.node("Mul", [g.node("Mul", [x, g.scalar(0.5)]), g.node("Add", [t, g.scalar(1.0)])])


def _silu(g: GraphBuilder, x: str) -> str:
    return g.node("Mul", [x, g.node("Sigmoid", [x])])


def _mish(g: GraphBuilder, x: str) -> str:
    return g.node("Mul", [x, g.node("Tanh", [g.node("Softplus", [x])])])


def _hardswish_pattern(g: GraphBuilder, x: str) -> str:
    return g.node("Mul", [x, g.node("HardSigmoid", [x], alpha=1 / 6)])


def _prelu(g: GraphBuilder, x: str) -> str:
    return g.node("PRelu", [x, g.init("slope", np.full(4, 0.2))])


ACTIVATIONS = [
    ("Relu", _single("Relu"), K.RELU, None),
    ("LeakyRelu alpha", _single("LeakyRelu", alpha=0.2), K.LEAKY_RELU, 0.2),
    ("LeakyRelu default", _single("LeakyRelu"), K.LEAKY_RELU, 0.01),
    ("PRelu", _prelu, K.PRELU, 0.2),
    ("Elu", _single("Elu", alpha=0.5), K.ELU, 0.5),
    ("Selu", _single("Selu"), K.SELU, None),
    ("Sigmoid", _single("Sigmoid"), K.SIGMOID, None),
    ("HardSigmoid", _single("HardSigmoid"), K.HARD_SIGMOID, None),
    ("Tanh", _single("Tanh"), K.TANH, None),
    ("Softmax", _single("Softmax"), K.SOFTMAX, None),
    ("LogSoftmax", _single("LogSoftmax"), K.SOFTMAX, None),
    ("Softplus", _single("Softplus"), K.SOFTPLUS, None),
    ("HardSwish", _single("HardSwish"), K.SILU, None),
    ("Clip(0,6)", _clip06, K.RELU6, None),
    ("Relu->Min(6)", _relu_min6, K.RELU6, None),
    ("Erf GELU (torch)", _erf_gelu, K.GELU, None),
    ("Erf GELU (0.5 first)", _erf_gelu_half_first, K.GELU, None),
    ("tanh GELU", _tanh_gelu, K.GELU, None),
    ("SiLU by Mul", _silu, K.SILU, None),
    ("Mish pattern", _mish, K.MISH, None),
    ("HardSwish pattern", _hardswish_pattern, K.SILU, None),
]


@pytest.mark.parametrize("label, make, kind, param", ACTIVATIONS, ids=[a[0] for a in ACTIVATIONS])
def test_activation_found_after_layer(tmp_path: Path, label: str, make, kind: K, param) -> None:
    g = GraphBuilder(6)
    y = g.linear(g.x, _w(6, 4), np.zeros(4), name="fc1")
    y = make(g, y)
    y = g.linear(y, _w(4, 2), name="fc2")
    g.output(y)
    m = _load(g, tmp_path)
    act = _layer(m, "fc1").activation
    assert act is not None, label
    assert act.kind is kind and act.source == "graph"
    if param is not None:
        assert act.param == pytest.approx(param)
    assert _layer(m, "fc2").activation.kind is K.LINEAR
    assert _layer(m, "fc2").inputs == ["fc1"]


def test_gelu_op(tmp_path: Path) -> None:
    g = GraphBuilder(6, opset=20)
    y = g.node("Gelu", [g.linear(g.x, _w(6, 4), name="fc1")])
    g.output(y)
    assert _layer(_load(g, tmp_path), "fc1").activation.kind is K.GELU


def test_walks_through_pass_through_ops(tmp_path: Path) -> None:
    g = GraphBuilder(6)
    y = g.linear(g.x, _w(6, 4), np.zeros(4), name="fc1")
    y = g.node("Reshape", [y, g.init("shape", np.array([1, 2, 2]), np.int64)])
    y = g.node("Dropout", [g.node("Identity", [y])])
    y = g.node("Flatten", [g.node("Transpose", [y], perm=[0, 2, 1])])
    y = g.node("Tanh", [y])
    g.output(y)
    assert _layer(_load(g, tmp_path), "fc1").activation.kind is K.TANH


def test_linear_when_feeding_another_layer_or_output(tmp_path: Path) -> None:
    m = _load(mlp([6, 5, 4, 3], activation=None), tmp_path)
    assert [layer.activation.kind for layer in m.layers] == [K.LINEAR] * 3
    assert [layer.inputs for layer in m.layers] == [[], ["fc1"], ["fc2"]]


def test_ambiguous_branches_are_unknown(tmp_path: Path) -> None:
    g = GraphBuilder(6)
    y = g.linear(g.x, _w(6, 4), name="fc1")
    g.output(g.node("Relu", [y]), g.node("Tanh", [y]))
    assert _layer(_load(g, tmp_path), "fc1").activation is None


def test_agreeing_branches_are_kept(tmp_path: Path) -> None:
    g = GraphBuilder(6)
    y = g.linear(g.x, _w(6, 4), name="fc1")
    a = g.linear(y, _w(4, 2), name="q")
    b = g.linear(y, _w(4, 2), name="k")
    g.output(a, b)
    m = _load(g, tmp_path)
    assert _layer(m, "fc1").activation.kind is K.LINEAR
    assert _layer(m, "q").inputs == ["fc1"]


def test_unknown_op_gives_unknown(tmp_path: Path) -> None:
    g = GraphBuilder(6)
    y = g.node("Sin", [g.linear(g.x, _w(6, 4), name="fc1")])
    g.output(y)
    assert _layer(_load(g, tmp_path), "fc1").activation is None


def test_layernorm_then_activation_sets_normalized(tmp_path: Path) -> None:
    g = GraphBuilder(6)
    y = g.linear(g.x, _w(6, 4), np.zeros(4), name="fc1")
    y = g.node("LayerNormalization", [y, g.init("ln.weight", np.ones(4)), g.init("ln.bias", np.zeros(4))],
               name="/ln/LayerNormalization", axis=-1)
    g.output(g.node("Relu", [y]))
    m = _load(g, tmp_path)
    fc1 = _layer(m, "fc1")
    assert fc1.activation.kind is K.RELU and fc1.normalized
    assert [t.role for t in _layer(m, "ln").tensors] == [Role.NORM_SCALE, Role.NORM_SHIFT]


def test_residual_add_is_marked(tmp_path: Path) -> None:
    g = GraphBuilder(4)
    h = g.node("Relu", [g.linear(g.x, _w(4, 4), np.zeros(4), name="fc1")])
    y = g.linear(h, _w(4, 4), np.zeros(4), name="fc2")
    y = g.node("Relu", [g.node("Add", [y, g.x])])
    g.output(y)
    m = _load(g, tmp_path)
    assert _layer(m, "fc2").residual and _layer(m, "fc2").activation.kind is K.RELU
    assert not _layer(m, "fc1").residual
    assert [t.role for t in _layer(m, "fc2").tensors] == [Role.KERNEL, Role.BIAS]


# ----------------------------------------------------------------------------- decoding

def _first_kernel_values(g: GraphBuilder, tmp_path: Path) -> tuple[LoadedModel, np.ndarray]:
    m = _load(g, tmp_path)
    return m, np.asarray(m.layers[0].kernel.load())


def test_float16_and_bfloat16_stored_in_int32_data(tmp_path: Path) -> None:
    vals = np.array([[1.5, -2.0], [0.25, 3.0]])
    for dt, np_dt in ((TensorProto.FLOAT16, np.float16), (TensorProto.BFLOAT16, ml_dtypes.bfloat16)):
        g = GraphBuilder(2)
        bits = vals.astype(np_dt).view(np.uint16).astype(np.int32).ravel().tolist()
        tp = TensorProto(name="fc.weight", data_type=dt, dims=[2, 2])
        tp.int32_data.extend(bits)
        g.add_tensor(tp)
        w = g.node("Cast", ["fc.weight"], to=TensorProto.FLOAT)
        g.output(g.node("MatMul", [g.x, w], name="/fc/MatMul"))
        m, got = _first_kernel_values(g, tmp_path)
        np.testing.assert_array_equal(got.astype(np.float64), vals)
        assert m.layers[0].kernel.dtype == ("float16" if dt == TensorProto.FLOAT16 else "bfloat16")


def test_constant_node_weights(tmp_path: Path) -> None:
    g = GraphBuilder(3)
    w = g.const_node(np.arange(6).reshape(3, 2) / 10, name="fc.weight")
    g.output(g.node("MatMul", [g.x, w], name="/fc/MatMul"))
    m, got = _first_kernel_values(g, tmp_path)
    np.testing.assert_allclose(got, np.arange(6).reshape(3, 2) / 10, rtol=1e-6)
    assert m.layers[0].kernel.fan_in == 3


def test_dequantize_linear_gives_effective_weights(tmp_path: Path) -> None:
    q = np.array([[10, -20, 30], [0, 5, -5]], dtype=np.int8)  # (in=2, out=3)
    scale = np.array([0.1, 0.2, 0.5], dtype=np.float32)
    zp = np.array([1, 0, -1], dtype=np.int8)
    g = GraphBuilder(2, opset=13)
    w = g.node("DequantizeLinear", [g.init("fc.weight_q", q, np.int8), g.init("s", scale),
                                    g.init("zp", zp, np.int8)], axis=1)
    g.output(g.node("MatMul", [g.x, w], name="/fc/MatMul"))
    m, got = _first_kernel_values(g, tmp_path)
    np.testing.assert_allclose(got, (q.astype(np.float32) - zp) * scale, rtol=1e-6)
    k = m.layers[0].kernel
    assert k.dtype == "int8 (dequantized)" and k.name == "fc.weight_q"
    assert not m.loose_tensors  # scale and zero point are not weights


def test_initializer_also_graph_input_is_noted(tmp_path: Path) -> None:
    g = mlp([4, 3])
    g.inputs.append(helper.make_tensor_value_info("fc1.weight", TensorProto.FLOAT, [4, 3]))
    m = _load(g, tmp_path)
    assert any("fc1.weight is also a graph input" in n and "overridden" in n for n in m.notes)


def test_declared_size_beyond_stored_bytes_is_skipped(tmp_path: Path) -> None:
    g = GraphBuilder(4)
    tp = numpy_helper.from_array(np.zeros((4, 3), np.float32), "fc.weight")
    del tp.dims[:]
    tp.dims.extend([4000000, 3000000])
    g.add_tensor(tp)
    g.output(g.node("MatMul", [g.x, "fc.weight"], name="/fc/MatMul"))
    m = _load(g, tmp_path, check=False)
    assert [name for name, _ in m.skipped] == ["fc.weight"]


# ----------------------------------------------------------------------------- external data

def _external_model(tmp_path: Path, location: str, dims=(4, 3), **kw) -> Path:
    g = GraphBuilder(dims[0])
    g.add_tensor(external_tensor("fc.weight", dims, location, **kw))
    g.output(g.node("MatMul", [g.x, "fc.weight"], name="/fc/MatMul"))
    return g.save(tmp_path / "m.onnx", check=False)


def test_external_data_is_read_lazily(tmp_path: Path) -> None:
    values = rng.normal(size=(4, 3)).astype(np.float32)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16 + values.astype("<f4").tobytes())
    path = _external_model(tmp_path, "weights.bin", offset=16, length=48)
    m = load(path, "onnx", LoadOptions())
    k = m.layers[0].kernel
    got = k.load()
    np.testing.assert_array_equal(got, values)
    assert isinstance(got, np.memmap) or isinstance(got.base, np.memmap)
    # nothing was read at load time: a later change of the file shows up in the next load()
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16 + (values * 2).astype("<f4").tobytes())
    np.testing.assert_array_equal(k.load(), values * 2)


def test_external_data_written_by_onnx_save(tmp_path: Path) -> None:
    g = mlp([6, 5, 2], seed=3)
    model = g.build()
    want = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    onnx.save_model(model, tmp_path / "big.onnx", save_as_external_data=True,
                    all_tensors_to_one_file=True, location="big.onnx.data", size_threshold=0)
    m = load(tmp_path / "big.onnx", "onnx", LoadOptions())
    for t in m.tensors():
        np.testing.assert_array_equal(t.load(), want[t.name])
    assert [lay.activation.kind for lay in m.layers] == [K.RELU, K.LINEAR]


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path opened through builtins.open or np.memmap during the test."""
    seen: list[str] = []
    real_open, real_memmap = builtins.open, np.memmap

    def spy_open(file, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(os.fspath(file) if isinstance(file, (str, os.PathLike)) else repr(file))
        return real_open(file, *a, **kw)

    class SpyMemmap(real_memmap):  # type: ignore[misc, valid-type]
        def __new__(cls, filename, *a, **kw):  # noqa: ANN001, ANN002, ANN003, ANN204
            seen.append(os.fspath(filename))
            return real_memmap.__new__(real_memmap, filename, *a, **kw)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(np, "memmap", SpyMemmap)
    return seen


@pytest.mark.parametrize("location", ["../secret.bin", "ABSOLUTE", "sub/../../secret.bin",
                                      "..\\secret.bin"])
def test_path_escaping_the_folder_is_unsafe_and_never_opened(tmp_path: Path, location: str,
                                                            opened: list[str]) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(12, "<f4").tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "sub").mkdir()
    loc = str(secret) if location == "ABSOLUTE" else location
    path = _external_model(model_dir, loc, length=48)
    m = load(path, "onnx", LoadOptions())
    assert len(m.unsafe) == 1
    assert m.unsafe[0].location == "fc.weight"
    assert "escapes the model folder" in m.unsafe[0].what and repr(loc) in m.unsafe[0].what
    assert [name for name, _ in m.skipped] == ["fc.weight"]
    assert m.layers[0].kernel is None
    for t in m.tensors():
        t.load()
    assert not any("secret" in p for p in opened)


def test_symlinked_external_file_is_unsafe(tmp_path: Path, opened: list[str]) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.ones(12, "<f4").tobytes())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").symlink_to(secret)
    m = load(_external_model(model_dir, "weights.bin", length=48), "onnx", LoadOptions())
    assert m.unsafe and m.unsafe[0].location == "fc.weight"
    assert not any("secret" in p or "weights.bin" in p for p in opened)


@pytest.mark.parametrize("content, kw, reason", [
    (None, {"length": 48}, "does not exist"),
    (b"\0" * 20, {"length": 48}, "too short"),
    (b"\0" * 100, {"length": 40}, "does not match"),
])
def test_unreadable_external_data_is_skipped_not_unsafe(tmp_path: Path, content, kw, reason) -> None:
    if content is not None:
        (tmp_path / "w.bin").write_bytes(content)
    m = load(_external_model(tmp_path, "w.bin", **kw), "onnx", LoadOptions())
    assert not m.unsafe
    assert len(m.skipped) == 1 and reason in m.skipped[0][1]


def test_in_memory_proto_with_external_data_is_skipped() -> None:
    g = GraphBuilder(4)
    g.add_tensor(external_tensor("fc.weight", (4, 3), "w.bin", length=48))
    g.output(g.node("MatMul", [g.x, "fc.weight"], name="/fc/MatMul"))
    m = from_proto(g.build(check=False))
    assert m.path == "<in-memory>" and m.skipped and not m.unsafe


# ----------------------------------------------------------------------------- bad files

def _assert_one_line_load_error(path: Path) -> str:
    with pytest.raises(LoadError) as info:
        load_any(path)
    msg = str(info.value)
    assert "\n" not in msg and msg
    return msg


def test_truncated_file_is_a_load_error(tmp_path: Path) -> None:
    data = mlp([30, 20, 5]).build().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    assert detect_format(path) == "onnx"
    assert "not a valid ONNX model" in _assert_one_line_load_error(path)


def test_garbage_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07" + bytes(np.random.default_rng(1).integers(0, 256, 500, dtype=np.uint8)))
    _assert_one_line_load_error(path)
    with pytest.raises(LoadError):
        load(path, "onnx", LoadOptions())


def test_empty_graph_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"\x08\x07")
    with pytest.raises(LoadError, match="no graph"):
        load(path, "onnx", LoadOptions())


# ----------------------------------------------------------------------------- real exports

def _torch_export(module, example) -> onnx.ModelProto:  # noqa: ANN001
    torch = pytest.importorskip("torch")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(module.eval(), example, buf, dynamo=False, opset_version=17)
        except Exception as exc:  # the legacy exporter may be gone in a future torch
            pytest.skip(f"torch.onnx.export(dynamo=False) unavailable: {exc}")
    return onnx.load_from_string(buf.getvalue())


@pytest.mark.frameworks
def test_torch_export_mlp(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2, self.fc3 = nn.Linear(12, 8), nn.Linear(8, 6, bias=False), nn.Linear(6, 3)
            self.act = nn.GELU()

        def forward(self, x):  # noqa: ANN001, ANN201
            return self.fc3(nn.functional.silu(self.fc2(self.act(self.fc1(x)))))

    proto = _torch_export(Net(), torch.zeros(2, 12))
    path = tmp_path / "net.onnx"
    onnx.save(proto, path)
    m = load_any(path)
    assert m.framework == "pytorch"
    assert [lay.name for lay in m.layers] == ["fc1", "fc2", "fc3"]
    assert [lay.activation.kind for lay in m.layers] == [K.GELU, K.SILU, K.LINEAR]
    assert (m.layers[0].kernel.fan_in, m.layers[0].kernel.fan_out) == (12, 8)
    assert (m.layers[1].kernel.fan_in, m.layers[1].kernel.fan_out) == (8, 6)  # MatMul, transposed by torch
    net_w = dict(Net().named_parameters())  # shapes only
    assert m.layers[0].kernel.shape == tuple(net_w["fc1.weight"].shape)


@pytest.mark.frameworks
def test_torch_export_cnn_embedding_lstm(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 8)
            self.lstm = nn.LSTM(8, 6, batch_first=True)
            self.conv = nn.Conv1d(6, 6, 3, groups=6)
            self.act = nn.LeakyReLU(0.2)
            self.head = nn.Linear(6, 2)

        def forward(self, idx):  # noqa: ANN001, ANN201
            x, _ = self.lstm(self.emb(idx))
            x = self.act(self.conv(x.transpose(1, 2)))
            return self.head(x.mean(-1))

    m = from_proto(_torch_export(Net(), torch.zeros(1, 7, dtype=torch.long)))
    by = {lay.name: lay for lay in m.layers}
    assert by["emb"].kernel.role is Role.EMBEDDING and by["emb"].kernel.fan_in == 8
    lstm = by["lstm"]
    assert [t.role for t in lstm.tensors] == [Role.KERNEL, Role.RECURRENT, Role.BIAS]
    assert lstm.tensors[0].gates == 4 and lstm.tensors[1].fan_in == 6
    conv = by["conv"]
    assert conv.activation.kind is K.LEAKY_RELU and conv.activation.param == pytest.approx(0.2)
    assert any("depthwise" in n for n in conv.kernel.notes)
    assert conv.inputs == ["lstm"]
    assert by["head"].activation.kind is K.LINEAR


# ----------------------------------------------------------------------------- sample models

def _make_samples():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("make_samples", REPO / "sample_models" / "make_samples.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["make_samples"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_sample_models_are_small_deterministic_and_load(tmp_path: Path) -> None:
    mod = _make_samples()
    first = mod.build_all(tmp_path / "a")
    second = mod.build_all(tmp_path / "b")
    assert set(first) >= {"mlp_he_sigmoid", "mlp_relu_clean", "cnn_clean", "deep_glorot_relu",
                          "selu_glorot", "constant_weights", "zero_hidden", "duplicate_neurons",
                          "exploding_normal", "vanishing_tiny", "nonfinite", "nonzero_mean",
                          "unrecognized"}
    assert sum(p.stat().st_size for p in first.values()) < 620 * 1024
    for name, path in first.items():
        assert path.read_bytes() == second[name].read_bytes(), name
        m = load_any(path)
        assert m.layers and not m.skipped and not m.unsafe
        assert all(layer.activation is not None for layer in m.layers if layer.kernel is not None
                   and layer.kernel.role is Role.KERNEL), name


def test_readme_example_model(tmp_path: Path) -> None:
    m = load_any(_make_samples().build_all(tmp_path)["mlp_he_sigmoid"])
    fc1, fc2 = m.layers
    assert (fc1.name, fc1.activation.kind, fc2.activation.kind) == ("fc1", K.SIGMOID, K.LINEAR)
    assert (fc1.kernel.fan_in, fc1.kernel.fan_out) == (300, 100)
    assert np.std(fc1.kernel.load()) == pytest.approx(np.sqrt(2 / 300), rel=0.03)
    w = _layer(load_any(tmp_path / "duplicate_neurons.onnx"), "fc1").kernel.load()
    assert all(np.array_equal(w[:, 0], w[:, j]) for j in range(1, 5))
    assert np.isnan(_layer(load_any(tmp_path / "nonfinite.onnx"), "fc1").kernel.load()).sum() == 3
