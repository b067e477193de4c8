"""Write the small, seeded ONNX sample models initaudit's README and tests use.

Run ``python sample_models/make_samples.py`` (writes next to this file) or call
:func:`build_all` with another folder. Every model is built with ``onnx.helper`` from numpy
draws with a fixed seed per model, so the files are identical on every run and machine. Names
imitate torch's legacy ONNX export (``/fc1/Gemm`` nodes, ``fc1.weight`` initializers).

Widths are kept small so that all files together stay under ~600 KB; each defect is still
unmistakable at these sizes (thousands of elements per tensor).

This script states how each model was *made*; what initaudit should find in them is written in
``sample_models/EXPECTED.md`` by whoever owns the rules.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


class _Graph:
    """Just enough of a graph builder for torch-export-like MLPs and CNNs."""

    def __init__(self, name: str, in_shape: tuple[int, ...]) -> None:
        self.name = name
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.inputs = [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(in_shape))]
        self.counter = 0

    def init(self, name: str, value: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], scope: str, **attrs: object) -> str:
        out = f"/{scope}/{op_type}_output_0"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"/{scope}/{op_type}", **attrs))
        return out

    def gemm(self, x: str, scope: str, w_out_in: np.ndarray, bias: np.ndarray) -> str:
        """torch Linear as exported: Gemm(x, W (out, in), b, transB=1)."""
        w = self.init(f"{scope}.weight", w_out_in.astype(np.float32))
        b = self.init(f"{scope}.bias", bias.astype(np.float32))
        return self.op("Gemm", [x, w, b], scope, alpha=1.0, beta=1.0, transB=1)

    def matmul(self, x: str, scope: str, w_in_out: np.ndarray, bias: np.ndarray) -> str:
        """A Linear exported as MatMul(x, W (in, out)) + Add(bias)."""
        w = self.init(f"{scope}.weight", w_in_out.astype(np.float32))
        b = self.init(f"{scope}.bias", bias.astype(np.float32))
        y = self.op("MatMul", [x, w], scope)
        return self.op("Add", [b, y], scope)

    def act(self, x: str, op_type: str, scope: str, **attrs: object) -> str:
        return self.op(op_type, [x], scope, **attrs)

    def model(self, output: str, out_dim: int, producer: str = "pytorch",
              producer_version: str = "2.13.0") -> onnx.ModelProto:
        # rename the last value to a plain graph output name, as torch does
        final = "output"
        for node in self.nodes:
            for i, o in enumerate(node.output):
                if o == output:
                    node.output[i] = final
        graph = helper.make_graph(self.nodes, self.name, self.inputs,
                                  [helper.make_tensor_value_info(final, TensorProto.FLOAT,
                                                                 [1, out_dim])],
                                  initializer=self.inits)
        m = helper.make_model(graph, producer_name=producer, producer_version=producer_version,
                              opset_imports=[helper.make_opsetid("", OPSET)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


# ---------------------------------------------------------------------------- init schemes
# shapes are (fan_out, fan_in) for Gemm/torch layout and (fan_in, fan_out) for MatMul layout;
# each function takes the fans explicitly so the layout never changes the scale.

def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def lecun_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)


def glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int,
                   fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, shape)


def torch_default(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)


def orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """QR of a Gaussian, sign-corrected (torch.nn.init.orthogonal_ / keras Orthogonal)."""
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q if rows >= cols else q.T


def _glorot_gemm(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    return glorot_uniform(rng, (fan_out, fan_in), fan_in, fan_out)


# ---------------------------------------------------------------------------- the models

def _mlp(name: str, rng: np.random.Generator, widths: list[int],
         hidden: Callable[[np.random.Generator, int, int], np.ndarray], act: str | None,
         last: Callable[[np.random.Generator, int, int], np.ndarray] = _glorot_gemm,
         **act_attrs: object) -> onnx.ModelProto:
    """Gemm layers fc1..fcN; every hidden layer is followed by ``act``, the last is linear."""
    g = _Graph(name, (1, widths[0]))
    x = "input"
    n = len(widths) - 1
    for i in range(n):
        fi, fo = widths[i], widths[i + 1]
        init = hidden if i < n - 1 else last
        x = g.gemm(x, f"fc{i + 1}", init(rng, fi, fo), np.zeros(fo))
        if i < n - 1 and act is not None:
            x = g.act(x, act, f"act{i + 1}", **act_attrs)
    return g.model(x, widths[-1])


def _he(rng: np.random.Generator, fi: int, fo: int) -> np.ndarray:
    return he_normal(rng, (fo, fi), fi)


def _lecun(rng: np.random.Generator, fi: int, fo: int) -> np.ndarray:
    return lecun_normal(rng, (fo, fi), fi)


def _with_hidden(name: str, rng: np.random.Generator, hidden_w: np.ndarray,
                 act: str = "Relu") -> onnx.ModelProto:
    """input -> fc1 (the given (out, in) weights) -> act -> fc2 (Glorot) -> output."""
    fo, fi = hidden_w.shape
    g = _Graph(name, (1, fi))
    x = g.gemm("input", "fc1", hidden_w, np.zeros(fo))
    x = g.act(x, act, "act1")
    x = g.gemm(x, "fc2", _glorot_gemm(rng, fo, 10), np.zeros(10))
    return g.model(x, 10)


def mlp_he_sigmoid(rng: np.random.Generator) -> onnx.ModelProto:
    """He normal (std sqrt(2/300) = 0.0816) feeding a Sigmoid: the README's first example."""
    return _mlp("mlp_he_sigmoid", rng, [300, 100, 10], _he, "Sigmoid")


def mlp_relu_clean(rng: np.random.Generator) -> onnx.ModelProto:
    """He normal + ReLU on three hidden layers, Glorot uniform linear output."""
    return _mlp("mlp_relu_clean", rng, [64, 64, 64, 64, 10], _he, "Relu")


def mlp_tanh_clean(rng: np.random.Generator) -> onnx.ModelProto:
    return _mlp("mlp_tanh_clean", rng, [32, 64, 48, 10], _glorot_gemm, "Tanh")


def mlp_selu_clean(rng: np.random.Generator) -> onnx.ModelProto:
    """LeCun normal N(0, 1/fan_in) with SELU everywhere, output layer included."""
    return _mlp("mlp_selu_clean", rng, [48, 64, 48, 10], _lecun, "Selu", last=_lecun)


def cnn_clean(rng: np.random.Generator) -> onnx.ModelProto:
    """Conv(3->16) + BN + ReLU, Conv(16->32, stride 2) + ReLU, Flatten, Gemm (torch default)."""
    g = _Graph("cnn_clean", (1, 3, 8, 8))
    w1 = g.init("conv1.weight", he_normal(rng, (16, 3, 3, 3), 27).astype(np.float32))
    b1 = g.init("conv1.bias", np.zeros(16, np.float32))
    x = g.op("Conv", ["input", w1, b1], "conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    bn = [g.init(f"bn1.{k}", v.astype(np.float32)) for k, v in
          (("weight", np.ones(16)), ("bias", np.zeros(16)), ("running_mean", np.zeros(16)),
           ("running_var", np.ones(16)))]
    x = g.op("BatchNormalization", [x, *bn], "bn1", epsilon=1e-5, momentum=0.9)
    x = g.act(x, "Relu", "relu1")
    w2 = g.init("conv2.weight", he_normal(rng, (32, 16, 3, 3), 144).astype(np.float32))
    b2 = g.init("conv2.bias", np.zeros(32, np.float32))
    x = g.op("Conv", [x, w2, b2], "conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1],
             strides=[2, 2])
    x = g.act(x, "Relu", "relu2")
    x = g.op("Flatten", [x], "flatten", axis=1)
    x = g.gemm(x, "fc", torch_default(rng, (10, 512), 512), torch_default(rng, (10,), 512))
    return g.model(x, 10)


def deep_glorot_relu(rng: np.random.Generator) -> onnx.ModelProto:
    """Eight MatMul layers, Glorot uniform, each followed by ReLU, no normalization."""
    width, depth = 40, 8
    g = _Graph("deep_glorot_relu", (1, width))
    x = "input"
    for i in range(depth):
        w = glorot_uniform(rng, (width, width), width, width)
        x = g.matmul(x, f"layers.{i}", w, np.zeros(width))
        x = g.act(x, "Relu", f"act{i}")
    x = g.matmul(x, "head", glorot_uniform(rng, (width, 10), width, 10), np.zeros(10))
    return g.model(x, 10)


def selu_glorot(rng: np.random.Generator) -> onnx.ModelProto:
    """Glorot uniform on a clearly non-square 256 -> 32 layer before SELU (LeCun would be
    std 0.0625, Glorot gives 0.0833)."""
    return _with_hidden("selu_glorot", rng, _glorot_gemm(rng, 256, 32), act="Selu")


def constant_weights(rng: np.random.Generator) -> onnx.ModelProto:
    return _with_hidden("constant_weights", rng, np.full((64, 64), 0.05))


def zero_hidden(rng: np.random.Generator) -> onnx.ModelProto:
    return _with_hidden("zero_hidden", rng, np.zeros((64, 64)))


def duplicate_neurons(rng: np.random.Generator) -> onnx.ModelProto:
    """He normal MatMul W (in, out) whose output units 1..4 (columns) copy unit 0."""
    w = he_normal(rng, (64, 64), 64)
    w[:, 1:5] = w[:, [0]]
    g = _Graph("duplicate_neurons", (1, 64))
    x = g.matmul("input", "fc1", w, np.zeros(64))
    x = g.act(x, "Relu", "act1")
    x = g.matmul(x, "fc2", glorot_uniform(rng, (64, 10), 64, 10), np.zeros(10))
    return g.model(x, 10)


def exploding_normal(rng: np.random.Generator) -> onnx.ModelProto:
    """N(0, 1) on a 64 -> 64 layer before ReLU (He would be std 0.177)."""
    return _with_hidden("exploding_normal", rng, rng.normal(0.0, 1.0, (64, 64)))


def vanishing_tiny(rng: np.random.Generator) -> onnx.ModelProto:
    """N(0, std 1e-4) on a 64 -> 64 layer before ReLU."""
    return _with_hidden("vanishing_tiny", rng, rng.normal(0.0, 1e-4, (64, 64)))


def nonfinite(rng: np.random.Generator) -> onnx.ModelProto:
    """He normal with three NaN entries and one +Inf."""
    w = he_normal(rng, (64, 64), 64)
    w[3, 7] = w[10, 20] = w[40, 1] = np.nan
    w[5, 5] = np.inf
    return _with_hidden("nonfinite", rng, w)


def nonzero_mean(rng: np.random.Generator) -> onnx.ModelProto:
    """He-normal scale for fan_in 128 (std 0.125) with the mean shifted to +0.05 (0.4 std)."""
    return _with_hidden("nonzero_mean", rng, he_normal(rng, (64, 128), 128) + 0.05)


def unrecognized(rng: np.random.Generator) -> onnx.ModelProto:
    """Laplace draws with std 0.3 (scale 0.3/sqrt 2): heavy tailed, no scheme fits."""
    w = rng.laplace(0.0, 0.3 / np.sqrt(2.0), (128, 128))
    return _with_hidden("unrecognized", rng, w)


def lstm_keras_like(rng: np.random.Generator) -> onnx.ModelProto:
    """A Keras-style LSTM as tf2onnx writes it: W Glorot uniform on the Keras kernel (in, 4H),
    R orthogonal (Keras' (H, 4H) orthogonal kernel transposed: (4H, H) with orthonormal
    columns), bias zero except the forget gate (ONNX gate order i, o, f, c)."""
    seq, inp, hid = 5, 16, 16
    w = glorot_uniform(rng, (4 * hid, inp), inp, 4 * hid)[None]
    r = orthogonal(rng, 4 * hid, hid)[None]
    b = np.zeros((1, 8 * hid))
    b[0, 2 * hid:3 * hid] = 1.0
    nodes = [
        helper.make_node("LSTM", ["input", "lstm/W", "lstm/R", "lstm/B"], ["Y", "Y_h", "Y_c"],
                         name="sequential/lstm/LSTM", hidden_size=hid),
        helper.make_node("Squeeze", ["Y_h", "axes0"], ["h"], name="sequential/lstm/Squeeze"),
        helper.make_node("MatMul", ["h", "dense/kernel"], ["mm"], name="sequential/dense/MatMul"),
        helper.make_node("Add", ["mm", "dense/bias"], ["output"], name="sequential/dense/BiasAdd"),
    ]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in
             (("lstm/W", w), ("lstm/R", r), ("lstm/B", b),
              ("dense/kernel", glorot_uniform(rng, (hid, 10), hid, 10)),
              ("dense/bias", np.zeros(10)))]
    inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes0"))
    graph = helper.make_graph(
        nodes, "lstm_keras_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [seq, 1, inp])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 10])], initializer=inits)
    m = helper.make_model(graph, producer_name="tf2onnx", producer_version="1.16.1",
                          opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


MODELS: dict[str, Callable[[np.random.Generator], onnx.ModelProto]] = {
    "mlp_he_sigmoid": mlp_he_sigmoid,
    "mlp_relu_clean": mlp_relu_clean,
    "mlp_tanh_clean": mlp_tanh_clean,
    "mlp_selu_clean": mlp_selu_clean,
    "cnn_clean": cnn_clean,
    "deep_glorot_relu": deep_glorot_relu,
    "selu_glorot": selu_glorot,
    "constant_weights": constant_weights,
    "zero_hidden": zero_hidden,
    "duplicate_neurons": duplicate_neurons,
    "exploding_normal": exploding_normal,
    "vanishing_tiny": vanishing_tiny,
    "nonfinite": nonfinite,
    "nonzero_mean": nonzero_mean,
    "unrecognized": unrecognized,
    "lstm_keras_like": lstm_keras_like,
}


def _seed(name: str) -> int:
    # one fixed seed per model: adding a model never changes the others
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def build_all(out_dir: Path) -> dict[str, Path]:
    """Write every sample model into ``out_dir``; returns {name: path}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, make in MODELS.items():
        path = out_dir / f"{name}.onnx"
        model = make(np.random.default_rng(_seed(name)))
        path.write_bytes(model.SerializeToString())
        written[name] = path
    return written


def main() -> int:
    written = build_all(Path(__file__).resolve().parent)
    total = 0
    for name, path in written.items():
        size = path.stat().st_size
        total += size
        print(f"{path.name:28s} {size / 1024:7.1f} KB")
    print(f"{'total':28s} {total / 1024:7.1f} KB ({len(written)} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
