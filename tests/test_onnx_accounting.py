"""Every stored tensor accounted for, on ONNX files written by the real tools.

For each file the test walks the protobuf itself with the ``onnx`` library (every initializer and
Constant in every graph, subgraph and local function) and checks that the weight tensors it finds
equal what the report calls analysed + skipped, and that ``ok`` appears only when nothing was
skipped. Files: torch.onnx (legacy and dynamo exporters), torch.jit.script with control flow,
onnxruntime quantization (dynamic, static QDQ, QOperator, MatMulNBits), onnxruntime's offline
optimizer and onnxruntime.transformers' BERT optimizer, and Silero VAD as shipped on PyPI.
"""

from __future__ import annotations

import glob
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from initaudit.engine import AuditConfig, audit_path
from initaudit.report import Status

# quantization parameters are metadata of the weight they scale, not weights themselves
_PARAM_OPS = {"DequantizeLinear": (1, 2), "QuantizeLinear": (1, 2), "QLinearConv": (1, 2, 4, 5, 6, 7),
              "QLinearMatMul": (1, 2, 4, 5, 6, 7), "MatMulNBits": (2, 3, 4),
              "MatMulInteger": (2, 3), "ConvInteger": (2, 3), "QGemm": (1, 2, 4, 5, 7, 8)}
_FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
_QUANT = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16,
          TensorProto.INT4, TensorProto.UINT4}


def _graphs(model: onnx.ModelProto) -> Iterator[onnx.GraphProto | onnx.FunctionProto]:
    stack: list = [model.graph, *model.functions]
    while stack:
        g = stack.pop()
        yield g
        for node in g.node:
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH:
                    stack.append(a.g)
                stack.extend(a.graphs)


def onnx_weight_count(path: Path) -> int:
    """Weight tensors as the onnx library sees them: float or quantized-integer stored tensors
    with at least two dimensions above 1, not used only as a scale or zero point."""
    model = onnx.load(os.fspath(path), load_external_data=False)
    stored: list[TensorProto] = []
    params: set[str] = set()
    used: set[str] = set()
    for g in _graphs(model):
        stored.extend(getattr(g, "initializer", []))
        for node in g.node:
            if node.op_type == "Constant":
                stored.extend(a.t for a in node.attribute if a.name == "value")
            for j, x in enumerate(node.input):
                (params if j in _PARAM_OPS.get(node.op_type, ()) else used).add(x)
    # a Constant's tensor carries no name of its own in the attribute: use the node output
    names = {id(t): t.name for t in stored}
    for g in _graphs(model):
        for node in g.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        names[id(a.t)] = node.output[0]
    only_params = params - used
    count = 0
    for t in stored:
        big = len([d for d in t.dims if d > 1]) >= 2
        if big and (t.data_type in _FLOATS or t.data_type in _QUANT) and \
                names.get(id(t), t.name) not in only_params:
            count += 1
    return count


def _check(path: Path) -> None:
    report = audit_path(path, AuditConfig(workers=1))
    assert report.status is not Status.ERROR, report.error
    cov = report.coverage
    assert cov is not None and cov.enumerated
    skipped_weights = {s["name"] for s in report.skipped}
    expected = onnx_weight_count(path)
    assert cov.weights_present == expected, (path.name, cov, report.skipped)
    assert cov.weights_analysed + cov.weights_skipped == expected
    assert cov.weights_skipped <= len(skipped_weights)
    assert all("category" in s for s in report.skipped)
    if report.status is Status.OK:
        assert not report.skipped and cov.complete
    # reading packed or quantized weights as raw integers would show as exploding-init errors
    # on them: none of these files has an error finding on a quantized or packed tensor
    dtypes = {t.name: t.dtype for t in report.tensors}
    bad = [f for f in report.findings if f.severity.value == "error"
           and any(w in dtypes.get(f.tensor or "", "") for w in ("int", "packed", "quantized"))]
    assert not bad, bad


# ----------------------------------------------------------------------------- the corpus

def _torch():
    return pytest.importorskip("torch")


def _net():
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.Sigmoid(),
                         nn.Flatten(), nn.Linear(16 * 4 * 4, 64), nn.GELU(),
                         nn.Linear(64, 10)).eval()


def _export(tmp: Path, dynamo: bool) -> Path:
    torch = _torch()
    path = tmp / f"net_{'dynamo' if dynamo else 'legacy'}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if dynamo:
                torch.onnx.export(_net(), (torch.zeros(1, 3, 8, 8),), path, dynamo=True,
                                  external_data=False)
            else:
                torch.onnx.export(_net(), torch.zeros(1, 3, 8, 8), path, dynamo=False,
                                  opset_version=17)
        except Exception as exc:  # noqa: BLE001 - an exporter missing in this torch
            pytest.skip(f"torch.onnx.export(dynamo={dynamo}) unavailable: {exc}")
    return path


def _control_flow(tmp: Path) -> Path:
    torch = _torch()
    nn = torch.nn

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

        def forward(self, x, n: int):
            if bool(x.sum() > 0):
                x = torch.relu(self.a(x))
            else:
                x = torch.tanh(self.b(x))
            for _ in range(n):
                x = torch.relu(self.a(x))
            return x

    path = tmp / "scripted.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(torch.jit.script(Gated()), (torch.zeros(2, 8), 3), path,
                              dynamo=False, opset_version=17)
        except Exception as exc:  # noqa: BLE001 - scripting support varies by torch
            pytest.skip(f"scripted export unavailable: {exc}")
    model = onnx.load(path)
    assert any(n.op_type in ("If", "Loop") for n in model.graph.node)
    return path


def _ort_quant(tmp: Path, kind: str) -> Path:
    pytest.importorskip("onnxruntime")
    from onnxruntime import quantization as q

    src = _export(tmp, dynamo=False)
    out = tmp / f"net_{kind}.onnx"
    if kind == "dynamic":
        q.quantize_dynamic(src, out, weight_type=q.QuantType.QInt8)
        return out

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            name = onnx.load(src).graph.input[0].name
            self.data = iter([{name: rng.normal(size=(1, 3, 8, 8)).astype(np.float32)}
                              for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    fmt = q.QuantFormat.QDQ if kind == "qdq" else q.QuantFormat.QOperator
    q.quantize_static(src, out, Reader(), quant_format=fmt)
    return out


def _dynamic_lstm_gather(tmp: Path) -> Path:
    """quantize_dynamic on Embedding + LSTM + Linear: quantized Gather (DequantizeLinear after
    the lookup), DynamicQuantizeLSTM and MatMulInteger."""
    pytest.importorskip("onnxruntime")
    from onnxruntime import quantization as q

    torch = _torch()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb, self.lstm, self.head = nn.Embedding(50, 16), nn.LSTM(16, 32, batch_first=True), nn.Linear(32, 4)

        def forward(self, idx):
            x, _ = self.lstm(self.emb(idx))
            return self.head(x)

    torch.manual_seed(0)
    src, out = tmp / "lstm.onnx", tmp / "lstm_q.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Net().eval(), torch.zeros(1, 6, dtype=torch.long), src, dynamo=False,
                          opset_version=17)
    q.quantize_dynamic(src, out, weight_type=q.QuantType.QInt8,
                       op_types_to_quantize=["Gather", "LSTM", "MatMul", "Gemm"])
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"DynamicQuantizeLSTM", "MatMulInteger"} <= ops, ops
    return out


def _nbits(tmp: Path) -> Path:
    pytest.importorskip("onnxruntime")
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
    except ImportError as exc:
        pytest.skip(f"no MatMulNBits quantizer: {exc}")
    torch = _torch()
    nn = torch.nn
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)).eval()
    src = tmp / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(mlp, torch.zeros(1, 4, 64), src, dynamo=False, opset_version=17)
    # a 3-D input makes torch export MatMul + Add (the quantizer rewrites MatMul only)
    model = onnx.load(src)
    quant = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=False)
    quant.process()
    out = tmp / "mlp_nbits.onnx"
    onnx.save(quant.model.model, out)
    assert any(n.op_type == "MatMulNBits" for n in onnx.load(out).graph.node)
    return out


def _ort_optimized(tmp: Path) -> Path:
    ort = pytest.importorskip("onnxruntime")
    src = _export(tmp, dynamo=False)
    out = tmp / "net_ort_opt.onnx"
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = os.fspath(out)
    ort.InferenceSession(os.fspath(src), so, providers=["CPUExecutionProvider"])
    return out


def _bert_optimized(tmp: Path) -> Path:
    """A tiny BertModel from a config, exported, then onnxruntime.transformers' optimizer
    (Attention with packed QKV, SkipLayerNormalization, BiasGelu)."""
    torch = _torch()
    pytest.importorskip("onnxruntime")
    try:
        from onnxruntime.transformers import optimizer
        from transformers import BertConfig, BertModel
    except Exception as exc:  # noqa: BLE001 - transformers' lazy imports fail in many ways
        pytest.skip(f"transformers / onnxruntime.transformers unavailable: {exc}")
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    cfg._attn_implementation = "eager"  # the pattern the Attention fusion recognises
    torch.manual_seed(0)
    bert = BertModel(cfg).eval()

    class Wrap(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, ids, mask, types):
            return self.bert(input_ids=ids, attention_mask=mask, token_type_ids=types,
                             return_dict=False)[0]

    src = tmp / "bert.onnx"
    ids = torch.ones(1, 8, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrap().eval(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), src,
                          dynamo=False, opset_version=17,
                          input_names=["input_ids", "attention_mask", "token_type_ids"])
        opt = optimizer.optimize_model(os.fspath(src), model_type="bert", num_heads=2,
                                       hidden_size=32, opt_level=0)
    out = tmp / "bert_opt.onnx"
    opt.save_model_to_file(os.fspath(out))
    ops = {n.op_type for n in onnx.load(out).graph.node}
    assert {"Attention", "SkipLayerNormalization"} <= ops, ops
    return out


def _silero(tmp: Path) -> Path:
    import importlib.util

    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("silero-vad not installed")
    files = glob.glob(os.path.join(next(iter(spec.submodule_search_locations)), "data", "silero_vad.onnx"))
    if not files:
        pytest.skip("silero_vad.onnx not shipped in this version")
    return Path(files[0])


CORPUS: dict[str, Callable[[Path], Path]] = {
    "torch-legacy": lambda t: _export(t, dynamo=False),
    "torch-dynamo": lambda t: _export(t, dynamo=True),
    "jit-script-if-loop": _control_flow,
    "ort-dynamic": lambda t: _ort_quant(t, "dynamic"),
    "ort-dynamic-lstm-gather": _dynamic_lstm_gather,
    "ort-static-qdq": lambda t: _ort_quant(t, "qdq"),
    "ort-static-qoperator": lambda t: _ort_quant(t, "qop"),
    "ort-matmulnbits": _nbits,
    "ort-offline-optimizer": _ort_optimized,
    "silero-vad": _silero,
    "ort-transformers-bert": _bert_optimized,
}


@pytest.mark.frameworks
@pytest.mark.parametrize("variant", sorted(CORPUS))
def test_every_weight_is_analysed_or_skipped(variant: str, tmp_path: Path) -> None:
    _check(CORPUS[variant](tmp_path))


@pytest.mark.frameworks
def test_silero_vad_convolutions_are_analysed(tmp_path: Path) -> None:
    path = _silero(tmp_path)
    report = audit_path(path, AuditConfig(workers=1))
    convs = [t for t in report.tensors if t.op == "Conv" and t.role == "kernel" and not t.skipped]
    assert len(convs) >= 10  # 6 per sample-rate branch of the If
    assert report.status is Status.OK and report.coverage.complete


@pytest.mark.frameworks
def test_dynamic_quantized_lstm_and_embedding_are_dequantized(tmp_path: Path) -> None:
    report = audit_path(_dynamic_lstm_gather(tmp_path), AuditConfig(workers=1))
    by_op = {(t.op, t.role): t for t in report.tensors if t.stats is not None}
    emb, w = by_op[("Gather", "embedding")], by_op[("DynamicQuantizeLSTM", "kernel")]
    assert "dequantized" in emb.dtype and abs(float(emb.stats.std) - 1.0) < 0.1  # N(0, 1)
    # torch's LSTM default U(+-1/sqrt(32)): std 1/sqrt(96)
    assert abs(float(w.stats.std) - 1 / np.sqrt(96)) < 0.01
    assert by_op[("DynamicQuantizeLSTM", "recurrent")].stats is not None
    assert report.status is Status.OK


@pytest.mark.frameworks
def test_optimized_bert_attention_is_split_into_q_k_v(tmp_path: Path) -> None:
    report = audit_path(_bert_optimized(tmp_path), AuditConfig(workers=1))
    parts = [t for t in report.tensors if t.op == "Attention" and t.role == "kernel"]
    assert len(parts) == 6 and {t.name[-3:] for t in parts} == {"[q]", "[k]", "[v]"}
    assert all((t.fan_in, t.fan_out) == (32, 32) for t in parts)
    assert report.status is Status.OK


@pytest.mark.frameworks
def test_quantized_kernels_are_dequantized_not_raw(tmp_path: Path) -> None:
    report = audit_path(_ort_quant(tmp_path, "qop"), AuditConfig(workers=1))
    kernels = [t for t in report.tensors if t.role == "kernel" and t.stats is not None]
    assert kernels and all("dequantized" in t.dtype for t in kernels)
    # int8 read raw would have std ~ 30-60; dequantized kernels have the float scale back
    assert all(abs(float(t.stats.std)) < 1.0 for t in kernels), [t.stats.std for t in kernels]
