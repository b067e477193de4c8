"""Optional measurement of the signal with onnxruntime (extra ``initaudit[probe]``).

The signal-propagation analysis (analysis/signal.py) *predicts* each layer's second moment from
the weights. For an ONNX model the prediction can be checked: run the graph with onnxruntime on
random N(0, 1) inputs of the declared shapes (dynamic dimensions become ``batch`` or 8) and
measure E[x²] of the data input of every weighted node. A layer's measured output figure is the
measured input of the layers that consume it, so the comparison is made where the prediction
speaks: after the activation, normalization and residual Add.

This runs the model's *operators* (not code from the file: ONNX has no such thing), and only when
asked for (``--probe``). Models whose inputs are not floating point are not probed (reason given).

Agreement: every compared layer's measured q within a factor of the prediction: ``TOLERANCE``
(1.5), widened for narrow deep stacks to exp(2·sqrt(Σ 1/width)) because a given finite-width
network's gains fluctuate around the mean-field value by about sqrt(depth/width) in log. At
width 256 and depth 10 the factor is 1.5; a scheme mismatch (a factor 2 per layer) is not
absorbed. Layers after a normalization are measured but not compared: exported BatchNorm runs
in inference mode with its running statistics, which at init do not normalize. Recurrent layers
are measured but not compared either: the prediction is the cell's first time step, while the
cell state of a run accumulates over the sequence.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .model import LoadedModel

if TYPE_CHECKING:  # pragma: no cover - onnx is an optional extra
    from onnx import GraphProto, NodeProto

    from .analysis.results import SignalReport
    from .report import FileReport

TOLERANCE = 1.5
BATCH = 64
DYNAMIC_DIM = 8


class ProbeUnavailable(RuntimeError):
    """onnxruntime is missing or the model cannot be probed; the message says why."""


def _ort() -> Any:  # the onnxruntime module (untyped)
    try:
        import onnxruntime as ort  # noqa: PLC0415 - optional extra
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ProbeUnavailable(
            "the probe needs onnxruntime: pip install 'initaudit[probe]'"
        ) from exc
    return ort


def _float_dtype(elem_type: int) -> np.dtype | None:
    import onnx

    mapping: dict[int, type[np.floating[Any]]] = {
        onnx.TensorProto.FLOAT: np.float32,
        onnx.TensorProto.DOUBLE: np.float64,
        onnx.TensorProto.FLOAT16: np.float16,
    }
    return np.dtype(mapping[elem_type]) if elem_type in mapping else None


def _inputs(graph: GraphProto, rng: np.random.Generator, batch: int) -> dict[str, np.ndarray]:
    initializers = {t.name for t in graph.initializer}
    feeds: dict[str, np.ndarray] = {}
    for vi in graph.input:
        if vi.name in initializers:
            continue
        tt = vi.type.tensor_type
        dtype = _float_dtype(tt.elem_type)
        if dtype is None:
            raise ProbeUnavailable(f"input {vi.name!r} is not floating point: not probed")
        shape = []
        for k, d in enumerate(tt.shape.dim):
            shape.append(d.dim_value if d.dim_value > 0 else (batch if k == 0 else DYNAMIC_DIM))
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def _weighted_nodes(graph: GraphProto, model: LoadedModel) -> dict[str, tuple[Any, str]]:
    """layer name -> (node, data input name) for every layer whose kernel a node consumes."""
    initializers = {t.name for t in graph.initializer}
    consumers: dict[str, list[NodeProto]] = {}
    for node in graph.node:
        for x in node.input:
            consumers.setdefault(x, []).append(node)
    out: dict[str, tuple[Any, str]] = {}
    for layer in model.layers:
        kernel = layer.kernel
        if kernel is None:
            continue
        nodes = consumers.get(kernel.name, [])
        # one hop through a Transpose/Cast/DequantizeLinear of the weight
        if not nodes:
            continue
        node = nodes[0]
        if node.op_type in ("Transpose", "Cast", "DequantizeLinear", "Reshape"):
            nxt = consumers.get(node.output[0], [])
            if not nxt:
                continue
            node = nxt[0]
        weights = {kernel.name, *(o for n in nodes for o in n.output)}
        data = [x for x in node.input if x and x not in initializers and x not in weights]
        if data:
            out[layer.name] = (node, data[0])
    return out


def probe_signal(
    source: Any,
    model: LoadedModel,
    signal: SignalReport,
    *,
    batch: int = BATCH,
    seed: int = 0,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """Measure the signal of an ONNX model and write it next to the prediction, in place.

    ``source`` is a path or an ``onnx.ModelProto``; ``signal`` is a report's ``signal``: each
    layer's ``measured_std`` is filled in. Returns the ``probe`` summary (also stored as
    ``signal.probe``).
    """
    import onnx

    ort = _ort()
    proto = onnx.load(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else source
    proto = onnx.ModelProto.FromString(proto.SerializeToString())  # never modify the caller's
    graph = proto.graph
    rng = np.random.default_rng(seed)
    feeds = _inputs(graph, rng, batch)
    # a fixed batch dimension (often 1) gives few samples per run: repeat with fresh inputs
    first = next(iter(feeds.values()), None)
    runs = max(1, batch // max(1, int(first.shape[0]))) if first is not None and first.ndim else 1
    nodes = _weighted_nodes(graph, model)
    wanted = sorted({data for _, data in nodes.values()})
    existing = {o.name for o in graph.output}
    for name in wanted:
        if name not in existing:
            graph.output.append(onnx.ValueInfoProto(name=name))
    try:
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        sums: dict[str, float] = {}
        for k in range(runs):
            if k:
                feeds = _inputs(graph, rng, batch)
            for name, value in zip(names, session.run(names, feeds)):
                arr = np.asarray(value)
                if arr.dtype.kind == "f":
                    sums[name] = sums.get(name, 0.0) + float(
                        np.mean(np.square(arr, dtype=np.float64))
                    )
        second = {name: total / runs for name, total in sums.items()}
    except Exception as exc:  # an operator ORT lacks, a shape it rejects: say so, don't crash
        raise ProbeUnavailable(
            f"onnxruntime could not run the model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None

    measured_in = {layer: second[data] for layer, (_, data) in nodes.items() if data in second}
    # a layer's output figure = the measured input of the layers consuming it
    consumers: dict[str, list[str]] = {}
    for layer in model.layers:
        for src in layer.inputs:
            consumers.setdefault(src, []).append(layer.name)
    compared: list[dict[str, Any]] = []
    inverse_width = 0.0
    after_norm = False
    layers = list(signal.layers)
    for index, entry in enumerate(layers):
        users = [measured_in[c] for c in consumers.get(entry.layer, []) if c in measured_in]
        inverse_width += 1.0 / entry.fan_in if entry.fan_in else 0.0
        # an exported BatchNorm runs in inference mode with its running statistics (0 and 1 at
        # init): it does not reset the scale as it does in training, where the prediction
        # speaks; layers from the first normalization on are measured but not compared
        after_norm = after_norm or entry.normalized
        if not users:
            layers[index] = replace(entry, measured_std=None)
            continue
        q = float(np.mean(users))
        layers[index] = replace(entry, measured_std=math.sqrt(q))
        predicted = float(entry.q_out)
        recurrent = (entry.note or "").startswith("recurrent")
        if after_norm or recurrent or not (math.isfinite(predicted) and predicted > 0 and q > 0):
            continue  # recurrent: the prediction is the first time step's, the run has many
        # finite width: a given network's gains fluctuate around the mean-field value by a
        # log-factor of about sqrt(Σ 1/width) (depth/width); allow two of those, at least x1.5
        allowed = max(tolerance, math.exp(2.0 * math.sqrt(inverse_width)))
        ratio = q / predicted
        compared.append(
            {
                "layer": entry.layer,
                "predicted_q": predicted,
                "measured_q": q,
                "ratio": ratio,
                "allowed_factor": allowed,
                "agrees": 1 / allowed <= ratio <= allowed,
            }
        )
    ratios = [c["ratio"] for c in compared]
    worst = max(ratios, key=lambda r: abs(math.log(r))) if ratios else None
    summary = {
        "tolerance_factor": tolerance,
        "batch": batch,
        "runs": runs,
        "seed": seed,
        "layers_compared": len(compared),
        "worst_ratio": worst,
        "agrees": bool(compared) and all(c["agrees"] for c in compared),
        "compared": compared,
    }
    signal.layers = layers
    signal.probe = summary
    return summary


def probe_step(model: LoadedModel, report: FileReport, *, seed: int = 0) -> None:
    """The engine's probe step (``--probe``): measure an ONNX model's signal with onnxruntime and
    put it next to the prediction in ``report.signal``; a model that cannot be probed keeps its
    prediction and gets a note saying why."""
    if model.format != "onnx":
        report.notes.append("probe: only ONNX models can be probed; prediction only")
        return
    if report.signal is None:
        report.notes.append("probe: no signal prediction to compare (the file has no graph)")
        return
    try:
        summary = probe_signal(model.path, model, report.signal, seed=seed)
    except ProbeUnavailable as exc:
        report.notes.append(f"probe: {exc}")
        return
    verdict = "agrees with" if summary["agrees"] else "DIFFERS from"
    report.notes.append(
        f"probe: measured signal {verdict} the prediction on {summary['layers_compared']} "
        f"layer(s) (worst measured/predicted ratio {summary['worst_ratio']:.3g}, "
        f"tolerance x{summary['tolerance_factor']:g}, wider for narrow deep stacks)"
        if summary["worst_ratio"] is not None
        else "probe: no layer could be compared"
    )
