"""ONNX loader: weights inside If/Loop bodies and local functions, contrib ops, Einsum and
quantized layouts, on graphs built with onnx.helper (fast; the real-tool corpus is in
test_onnx_accounting.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from initaudit.engine import AuditConfig, audit_path
from initaudit.loaders import LoadOptions
from initaudit.loaders.onnx import load
from initaudit.loaders.onnx.quantized import _nbits_dequant
from initaudit.model import ActivationKind, LoadedModel, Role
from initaudit.report import Status

K = ActivationKind
rng = np.random.default_rng(0)


def _w(*shape: int, std: float = 0.1) -> np.ndarray:
    return rng.normal(0, std, shape).astype(np.float32)


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def _save(tmp: Path, nodes: list, inits: list | None = None, *, functions: list | None = None,
          opsets: dict[str, int] | None = None, inputs: list | None = None) -> Path:
    graph = helper.make_graph(
        nodes, "g", inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits or [])
    ops = [helper.make_opsetid(d, v) for d, v in (opsets or {"": 17}).items()]
    model = helper.make_model(graph, opset_imports=ops, functions=functions or [])
    model.ir_version = 8
    path = tmp / "m.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def _load(path: Path) -> LoadedModel:
    return load(path, "onnx", LoadOptions())


def _branch(name: str, act: str, w: np.ndarray) -> onnx.GraphProto:
    return helper.make_graph(
        [_const(f"{name}_w", w), helper.make_node("MatMul", ["x", f"{name}_w"], [f"{name}_h"]),
         helper.make_node(act, [f"{name}_h"], [f"{name}_out"])],
        name, [], [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)])


def test_weights_inside_if_branches_are_layers_with_activations(tmp_path: Path) -> None:
    then, other = _branch("then", "Relu", _w(8, 4)), _branch("else", "Tanh", _w(8, 4))
    nodes = [_const("cond", np.array(True)),
             helper.make_node("If", ["cond"], ["y"], then_branch=then, else_branch=other)]
    path = _save(tmp_path, nodes)
    m = _load(path)
    acts = {t.name: lay.activation.kind for lay in m.layers for t in lay.tensors}
    assert acts == {"then_w": K.RELU, "else_w": K.TANH}
    r = audit_path(path)
    assert r.status is Status.OK and r.coverage.weights_analysed == 2


def test_sibling_branches_reusing_a_name_stay_distinct(tmp_path: Path) -> None:
    a, b = _branch("b", "Relu", _w(8, 4)), _branch("b", "Relu", _w(8, 4))
    nodes = [_const("cond", np.array(True)),
             helper.make_node("If", ["cond"], ["y"], then_branch=a, else_branch=b)]
    r = audit_path(_save(tmp_path, nodes))
    assert r.coverage.weights_present == 2 and r.coverage.weights_analysed == 2


def test_loop_body_weight_and_activation_through_the_loop(tmp_path: Path) -> None:
    body = helper.make_graph(
        [_const("lw", _w(8, 8)), helper.make_node("MatMul", ["h_in", "lw"], ["h1"]),
         helper.make_node("Relu", ["h1"], ["h_out"]),
         helper.make_node("Identity", ["cond_in"], ["cond_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("h_in", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("h_out", TensorProto.FLOAT, None)])
    nodes = [_const("n", np.array(3, np.int64)), _const("c", np.array(True)),
             helper.make_node("Loop", ["n", "c", "x"], ["y"], body=body)]
    m = _load(_save(tmp_path, nodes))
    (layer,) = m.layers
    assert layer.kernel.name == "lw" and layer.activation.kind is K.RELU


def test_function_constant_is_one_stored_tensor_shared_by_calls(tmp_path: Path) -> None:
    fn = helper.make_function(
        "local", "Block", ["a"], ["b"],
        [_const("fw", _w(8, 8)), helper.make_node("MatMul", ["a", "fw"], ["t"]),
         helper.make_node("Sigmoid", ["t"], ["b"])],
        [helper.make_opsetid("", 17)])
    nodes = [helper.make_node("Block", ["x"], ["h"], domain="local"),
             helper.make_node("Block", ["h"], ["y"], domain="local")]
    path = _save(tmp_path, nodes, functions=[fn], opsets={"": 17, "local": 1})
    m = _load(path)
    kernels = [t for t in m.tensors() if t.role is Role.KERNEL]
    assert [t.name for t in kernels] == ["Block/fw"]
    assert m.layers[0].activation.kind is K.SIGMOID
    assert [s.name for s in m.inventory if s.weight_like] == ["Block/fw"]
    assert audit_path(path).status is Status.OK


def test_constant_of_an_uncalled_function_is_unmapped(tmp_path: Path) -> None:
    fn = helper.make_function("local", "Unused", ["a"], ["b"],
                              [_const("uw", _w(8, 8)), helper.make_node("MatMul", ["a", "uw"], ["b"])],
                              [helper.make_opsetid("", 17)])
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [numpy_helper.from_array(_w(8, 4), "w")], functions=[fn],
                 opsets={"": 17, "local": 1})
    r = audit_path(path)
    assert r.status is Status.PARTIAL
    assert [(s["name"], s["category"]) for s in r.skipped] == [("Unused/uw", "unmapped")]


def test_weight_of_an_unknown_op_is_categorised(tmp_path: Path) -> None:
    path = _save(tmp_path, [helper.make_node("Mystery", ["x", "w"], ["y"], domain="acme")],
                 [numpy_helper.from_array(_w(8, 4), "w")], opsets={"": 17, "acme": 1})
    r = audit_path(path)
    assert r.status is Status.PARTIAL
    assert [(s["name"], s["category"]) for s in r.skipped] == [("w", "unrecognised-op")]


def test_unsafe_external_constant_inside_a_subgraph(tmp_path: Path) -> None:
    tp = TensorProto(name="ext", data_type=TensorProto.FLOAT, dims=[8, 4],
                     data_location=TensorProto.EXTERNAL)
    e = tp.external_data.add()
    e.key, e.value = "location", "../../etc/passwd"
    body = helper.make_graph([helper.make_node("Constant", [], ["cw"], value=tp),
                              helper.make_node("MatMul", ["x", "cw"], ["o"])],
                             "then", [], [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)])
    other = _branch("else", "Relu", _w(8, 4))
    nodes = [_const("cond", np.array(True)),
             helper.make_node("If", ["cond"], ["y"], then_branch=body, else_branch=other)]
    m = _load(_save(tmp_path, nodes))
    assert [u.location for u in m.unsafe] == ["cw"]
    r = audit_path(tmp_path / "m.onnx")
    assert r.status is Status.PARTIAL and {"name": "cw", "category": "unsafe"}.items() <= \
        next(s for s in r.skipped if s["name"] == "cw").items()


def test_unsafe_external_initializer_nobody_uses(tmp_path: Path) -> None:
    tp = TensorProto(name="orphan", data_type=TensorProto.FLOAT, dims=[4],
                     data_location=TensorProto.EXTERNAL)
    e = tp.external_data.add()
    e.key, e.value = "location", "/etc/passwd"
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["y"])],
                 [numpy_helper.from_array(_w(8, 4), "w"), tp])
    assert [u.location for u in _load(path).unsafe] == ["orphan"]


@pytest.mark.parametrize(("equation", "wshape", "fans"), [
    ("bi,io->bo", (8, 5), (8, 5)),
    ("bsh,hnd->bsnd", (8, 2, 3), (8, 6)),
    ("bi,oi->bo", (5, 8), (8, 5)),
])
def test_einsum_fans_from_the_equation(tmp_path: Path, equation: str, wshape: tuple,
                                       fans: tuple) -> None:
    shape = [1, 4, 8] if equation.startswith("bsh") else [1, 8]
    path = _save(tmp_path, [helper.make_node("Einsum", ["x", "w"], ["y"], equation=equation)],
                 [numpy_helper.from_array(_w(*wshape), "w")],
                 inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)])
    k = _load(path).layers[0].kernel
    assert (k.fan_in, k.fan_out) == fans


def test_attention_packed_qkv_is_three_kernels(tmp_path: Path) -> None:
    w, bias = _w(8, 24), np.zeros(24, np.float32)
    path = _save(tmp_path, [helper.make_node("Attention", ["x", "qkv", "qkv_b"], ["y"],
                                             domain="com.microsoft", num_heads=2)],
                 [numpy_helper.from_array(w, "qkv"), numpy_helper.from_array(bias, "qkv_b")],
                 opsets={"": 17, "com.microsoft": 1})
    (layer,) = _load(path).layers
    kernels = [t for t in layer.tensors if t.role is Role.KERNEL]
    assert [t.name for t in kernels] == ["qkv[q]", "qkv[k]", "qkv[v]"]
    assert all(t.stored == "qkv" and (t.fan_in, t.fan_out) == (8, 8) for t in kernels)
    np.testing.assert_array_equal(kernels[2].load(), w[:, 16:24])
    r = audit_path(path)
    assert r.status is Status.OK and r.coverage.weights_analysed == 1


@pytest.mark.parametrize(("attrs", "kind"), [
    ({"activation": "Relu"}, K.RELU), ({"activation": "Sigmoid"}, K.SIGMOID),
    ({"activation": "LeakyRelu", "activation_params": [0.2]}, K.LEAKY_RELU),
])
def test_fused_conv_activation_attribute(tmp_path: Path, attrs: dict, kind: K) -> None:
    path = _save(tmp_path, [helper.make_node("FusedConv", ["x", "w"], ["y"], domain="com.microsoft",
                                             **attrs)],
                 [numpy_helper.from_array(_w(4, 3, 3, 3), "w")], opsets={"": 17, "com.microsoft": 1},
                 inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])])
    layer = _load(path).layers[0]
    assert layer.kernel.fan_in == 27 and layer.activation.kind is kind


@pytest.mark.parametrize(("alpha", "kind"), [(1.702, K.GELU), (1.0, K.SILU), (2.5, K.OTHER)])
def test_quick_gelu_alpha(tmp_path: Path, alpha: float, kind: K) -> None:
    path = _save(tmp_path, [helper.make_node("MatMul", ["x", "w"], ["h"]),
                            helper.make_node("QuickGelu", ["h"], ["y"], domain="com.microsoft",
                                             alpha=alpha)],
                 [numpy_helper.from_array(_w(8, 4), "w")], opsets={"": 17, "com.microsoft": 1})
    assert _load(path).layers[0].activation.kind is kind


def test_matmul_nbits_dequantizes_to_the_float_weight() -> None:
    n, k, block = 6, 40, 16
    w = _w(n, k)
    blocks = -(-k // block)
    padded = np.zeros((n, blocks * block), np.float32)
    padded[:, :k] = w
    groups = padded.reshape(n, blocks, block)
    lo, hi = groups.min(-1, keepdims=True), groups.max(-1, keepdims=True)
    scale = (hi - lo) / 15
    zp = np.clip(np.round(-lo / scale), 0, 15)
    q = np.clip(np.round(groups / scale + zp), 0, 15).astype(np.uint8)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    zq = zp.reshape(n, blocks).astype(np.uint8)
    zq = np.pad(zq, ((0, 0), (0, blocks % 2)))
    zpacked = (zq[:, 0::2] | (zq[:, 1::2] << 4)).astype(np.uint8)
    out = _nbits_dequant(packed, scale.reshape(-1), zpacked.reshape(-1), n, k, 4, block)
    assert out.shape == (n, k)
    assert np.max(np.abs(out - w)) <= scale.max() / 2 + 1e-6


def test_blocked_dequantize_linear(tmp_path: Path) -> None:
    w = _w(8, 4)
    scale = np.abs(w).reshape(2, 4, 4).max(axis=1) / 127  # blocks of 4 rows along axis 0
    q = np.round(w / np.repeat(scale, 4, axis=0)).astype(np.int8)
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws"], ["wd"], axis=0, block_size=4),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    path = _save(tmp_path, nodes, [numpy_helper.from_array(q, "wq"),
                                   numpy_helper.from_array(scale.astype(np.float32), "ws")],
                 opsets={"": 21})
    k = _load(path).layers[0].kernel
    assert "dequantized" in k.dtype
    np.testing.assert_allclose(k.load(), w, atol=float(scale.max()))
    r = audit_path(path, AuditConfig(workers=1))
    assert r.status is Status.OK and r.coverage.weights_present == 1  # the scale is not a weight


def test_qlinear_matmul_weight_is_dequantized(tmp_path: Path) -> None:
    w = _w(8, 4)
    s = np.float32(np.abs(w).max() / 127)
    q = np.round(w / s).astype(np.int8)
    one, zero = np.float32(1.0), np.int8(0)
    inits = [numpy_helper.from_array(q, "wq"), numpy_helper.from_array(np.array(s), "ws"),
             numpy_helper.from_array(np.array(zero), "wz"), numpy_helper.from_array(np.array(one), "s1"),
             numpy_helper.from_array(np.array(zero), "z1")]
    path = _save(tmp_path, [helper.make_node("QLinearMatMul", ["x", "s1", "z1", "wq", "ws", "wz",
                                                               "s1", "z1"], ["y"])], inits,
                 inputs=[helper.make_tensor_value_info("x", TensorProto.INT8, [1, 8])])
    k = _load(path).layers[0].kernel
    assert (k.fan_in, k.fan_out) == (8, 4)
    np.testing.assert_allclose(k.load(), w, atol=float(s))


@pytest.mark.parametrize("dtype", ["int4", "uint4"])
def test_int4_weights_through_dequantize_linear(tmp_path: Path, dtype: str) -> None:
    signed = dtype == "int4"
    q = rng.integers(-8 if signed else 0, 8 if signed else 16, size=(8, 5))  # odd count: padding
    zp = 0 if signed else 8
    scale = np.float32(0.02)
    tp = helper.make_tensor("wq", TensorProto.INT4 if signed else TensorProto.UINT4, [8, 5],
                            q.flatten().tolist())
    zpt = helper.make_tensor("wz", tp.data_type, [], [zp])
    nodes = [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"]),
             helper.make_node("MatMul", ["x", "wd"], ["y"])]
    path = _save(tmp_path, nodes, [tp, zpt, numpy_helper.from_array(np.array(scale), "ws")],
                 opsets={"": 21})
    k = _load(path).layers[0].kernel
    np.testing.assert_allclose(k.load(), (q - zp) * scale, rtol=1e-6)
    assert audit_path(path, AuditConfig(workers=1)).status is Status.OK


def test_embed_layer_normalization_embeddings_and_norm(tmp_path: Path) -> None:
    word, pos, seg = _w(50, 16, std=0.02), _w(32, 16, std=0.02), _w(2, 16, std=0.02)
    inits = [numpy_helper.from_array(word, "word"), numpy_helper.from_array(pos, "pos"),
             numpy_helper.from_array(seg, "seg"),
             numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(16, np.float32), "beta")]
    node = helper.make_node("EmbedLayerNormalization", ["ids", "segs", "word", "pos", "seg",
                                                        "gamma", "beta"], ["y", "mask_index"],
                            domain="com.microsoft")
    ids = [helper.make_tensor_value_info(n, TensorProto.INT32, [1, 8]) for n in ("ids", "segs")]
    path = _save(tmp_path, [node], inits, inputs=ids, opsets={"": 17, "com.microsoft": 1})
    m = _load(path)
    roles = {t.name: t.role for t in m.tensors()}
    assert roles == {"word": Role.EMBEDDING, "pos": Role.EMBEDDING, "seg": Role.EMBEDDING,
                     "gamma": Role.NORM_SCALE, "beta": Role.NORM_SHIFT}
    r = audit_path(path, AuditConfig(workers=1))
    assert r.status is Status.OK and r.coverage.weights_analysed == 3


def test_weight_computed_in_the_graph_is_not_called_ok(tmp_path: Path) -> None:
    """onnx's "light" test models: kernels are ConstantOfShape fills, nothing is stored."""
    fill = numpy_helper.from_array(np.array([0.02], np.float32), "")
    nodes = [_const("shape", np.array([8, 4], np.int64)),
             helper.make_node("ConstantOfShape", ["shape"], ["w"], value=fill),
             helper.make_node("MatMul", ["x", "w"], ["y"])]
    r = audit_path(_save(tmp_path, nodes))
    assert r.status is Status.PARTIAL
    assert [(s["name"], s["category"]) for s in r.skipped] == [("w", "other")]
    assert "computed in the graph" in r.skipped[0]["reason"]


def test_matmul_of_two_activations_is_not_a_computed_weight(tmp_path: Path) -> None:
    nodes = [helper.make_node("Transpose", ["x"], ["xt"]),
             helper.make_node("MatMul", ["x", "xt"], ["y"])]
    r = audit_path(_save(tmp_path, nodes, inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])]))
    assert r.status is Status.OK and not r.skipped
