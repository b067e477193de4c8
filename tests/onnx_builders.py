"""Small helpers to build ONNX graphs with ``onnx.helper`` in tests.

    g = GraphBuilder(in_dim=8)
    y = g.linear(g.x, rng.normal(size=(8, 4)), name="fc1")   # MatMul + Add, W (in, out)
    y = g.node("Relu", [y])
    g.output(y)
    path = g.save(tmp_path / "m.onnx")

Node names imitate torch's exporter (``/fc1/MatMul``) so layer naming is exercised too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class GraphBuilder:
    """Accumulates nodes and initializers; ``build()`` returns a checked ModelProto."""

    def __init__(self, in_dim: int | Sequence[int] = 8, *, producer: str = "pytorch",
                 opset: int = 17, input_name: str = "x",
                 input_type: int = TensorProto.FLOAT) -> None:
        shape = [1, in_dim] if isinstance(in_dim, int) else list(in_dim)
        self.x = input_name
        self.inputs = [helper.make_tensor_value_info(input_name, input_type, shape)]
        self.outputs: list[onnx.ValueInfoProto] = []
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[TensorProto] = []
        self.producer = producer
        self.opset = opset
        self._n = 0

    def _fresh(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def init(self, name: str, value: Any, dtype: Any = np.float32) -> str:
        """Add an initializer (raw_data, little-endian, as onnx writes it)."""
        arr = np.asarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def add_tensor(self, tensor: TensorProto) -> str:
        self.inits.append(tensor)
        return tensor.name

    def scalar(self, value: float, dtype: Any = np.float32) -> str:
        return self.init(self._fresh("c"), np.asarray(value, dtype=dtype), dtype=None)

    def const_node(self, value: Any, dtype: Any = np.float32, name: str | None = None) -> str:
        """A Constant node holding ``value`` (how some exporters store weights)."""
        out = name or self._fresh("const")
        arr = np.asarray(value, dtype=dtype)
        self.nodes.append(helper.make_node("Constant", [], [out], name=f"/{out}/Constant",
                                           value=numpy_helper.from_array(arr, out)))
        return out

    def node(self, op: str, inputs: Sequence[str], *, name: str | None = None, outputs: int = 1,
             domain: str | None = None, **attrs: Any) -> str:
        """Add a node; returns its first output (all outputs are ``<out>``, ``<out>_1``, ...)."""
        node_name = name or f"/{self._fresh(op.lower())}/{op}"
        base = node_name.strip("/").replace("/", "_") + "_output"
        outs = [base] + [f"{base}_{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), outs, name=node_name,
                                           domain=domain, **attrs))
        return outs[0]

    def node_outputs(self, op: str, inputs: Sequence[str], n: int, **kw: Any) -> list[str]:
        first = self.node(op, inputs, outputs=n, **kw)
        return [first] + [f"{first}_{i}" for i in range(1, n)]

    def linear(self, x: str, w: np.ndarray, b: np.ndarray | None = None, *, name: str = "fc",
               kind: str = "matmul") -> str:
        """A dense layer. ``kind``: "matmul" (W (in, out) + Add), "gemm" (W (in, out)),
        "gemm_t" (W (out, in), transB=1, as torch exports Linear)."""
        wn = self.init(f"{name}.weight", w)
        if kind == "matmul":
            y = self.node("MatMul", [x, wn], name=f"/{name}/MatMul")
            if b is not None:
                y = self.node("Add", [self.init(f"{name}.bias", b), y], name=f"/{name}/Add")
            return y
        inputs = [x, wn] + ([self.init(f"{name}.bias", b)] if b is not None else [])
        return self.node("Gemm", inputs, name=f"/{name}/Gemm", transB=1 if kind == "gemm_t" else 0)

    def output(self, *names: str) -> None:
        for n in names:
            # a symbolic shape: the checker wants one, the loader never reads it
            self.outputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, ["out"]))

    def build(self, check: bool = True) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "test", self.inputs, self.outputs,
                                  initializer=self.inits)
        model = helper.make_model(graph, producer_name=self.producer,
                                  opset_imports=[helper.make_opsetid("", self.opset)])
        model.ir_version = 8
        if check:
            onnx.checker.check_model(model)
        return model

    def save(self, path: Path, check: bool = True) -> Path:
        path = Path(path)
        path.write_bytes(self.build(check).SerializeToString())
        return path


def external_tensor(name: str, dims: Sequence[int], location: str, *, offset: int = 0,
                    length: int | None = None, data_type: int = TensorProto.FLOAT) -> TensorProto:
    """An initializer whose data lives in an external file (no bytes embedded)."""
    tp = TensorProto()
    tp.name = name
    tp.data_type = data_type
    tp.dims.extend(int(d) for d in dims)
    tp.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = tp.external_data.add()
        e.key, e.value = k, v
    return tp


def mlp(widths: Sequence[int], activation: str | None = "Relu", *, seed: int = 0,
        kind: str = "matmul") -> GraphBuilder:
    """fc1..fcN with ``activation`` after every hidden layer; the last layer's output is the
    graph output."""
    rng = np.random.default_rng(seed)
    g = GraphBuilder(widths[0])
    x = g.x
    for i in range(len(widths) - 1):
        fi, fo = widths[i], widths[i + 1]
        w = rng.normal(0, np.sqrt(2 / fi), (fo, fi) if kind == "gemm_t" else (fi, fo))
        x = g.linear(x, w, np.zeros(fo), name=f"fc{i + 1}", kind=kind)
        if activation is not None and i < len(widths) - 2:
            x = g.node(activation, [x], name=f"/act{i + 1}/{activation}")
    g.output(x)
    return g
