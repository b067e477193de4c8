"""Per-rule tests (one file per rule, checked one-to-one by tests/test_rule_catalogue.py).

The helpers below build inputs in memory: a dict of numpy arrays in torch layout (out, in)
goes through ``initaudit.api.audit`` exactly as a bare state_dict would, with activations
given as hints (``"fc1=relu"``), or a hand-built :class:`LoadedModel` with a graph for the
rules that need layer order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from initaudit.activations import parse_activation
from initaudit.api import audit
from initaudit.engine import AuditConfig, analyse
from initaudit.model import Layer, LoadedModel, Role, WeightTensor
from initaudit.report import FileReport, Finding

# realised std of a normal truncated at +-2 sigma, per unit of pre-truncation sigma
TN2_STD_FACTOR = 0.87962566103423978


def audit_arrays(arrays: Mapping[str, np.ndarray], activation: Iterable[str] = (),
                 **options: object) -> FileReport:
    """Audit a name -> array mapping (torch layout) the way a bare state_dict is audited."""
    report = audit(dict(arrays), activation=list(activation), **options)
    assert len(report.files) == 1
    return report.files[0]


def findings(report: FileReport, code: str) -> list[Finding]:
    return [f for f in report.findings if f.code == code]


def codes(report: FileReport) -> set[str]:
    return {f.code for f in report.findings}


# ---- initializers in torch layout (fan_out, fan_in), drawn with a seeded generator ----------

def he_normal(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_out, fan_in))


def he_uniform(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    bound = np.sqrt(6.0 / fan_in)
    return rng.uniform(-bound, bound, (fan_out, fan_in))


def glorot_normal(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), (fan_out, fan_in))


def glorot_uniform(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    bound = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-bound, bound, (fan_out, fan_in))


def lecun_normal(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), (fan_out, fan_in))


def truncated_normal(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Keras/JAX truncated normal with realised std ``std`` (redraws outside +-2 sigma)."""
    sigma = std / TN2_STD_FACTOR
    out = rng.normal(0.0, sigma, shape)
    bad = np.abs(out) > 2.0 * sigma
    while bad.any():
        out[bad] = rng.normal(0.0, sigma, int(bad.sum()))
        bad = np.abs(out) > 2.0 * sigma
    return out


def torch_default(rng: np.random.Generator, fan_out: int, fan_in: int) -> np.ndarray:
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, (fan_out, fan_in))


# ---- models with a graph, for rules that follow layer order ----------------------------------

def dense_layer(name: str, weight: np.ndarray, inputs: list[str], activation: str | None = "relu",
                normalized: bool = False) -> Layer:
    """A Linear-like layer with one kernel in torch layout (out, in)."""
    w = np.asarray(weight)
    tensor = WeightTensor(name=f"{name}.weight", layer=name, op="Gemm", role=Role.KERNEL,
                          shape=tuple(w.shape), dtype=str(w.dtype), load=lambda w=w: w,
                          fan_in=int(w.shape[1]), fan_out=int(w.shape[0]), unit_axis=0)
    return Layer(name=name, op="Gemm", tensors=[tensor],
                 activation=parse_activation(activation) if activation else None,
                 normalized=normalized, inputs=list(inputs))


def chain_model(weights: list[np.ndarray], activation: str = "relu",
                normalized: Iterable[int] = ()) -> LoadedModel:
    """fc0 -> fc1 -> ... in a graph (has_graph=True); indices in ``normalized`` have a norm."""
    norm = set(normalized)
    layers: list[Layer] = []
    previous: list[str] = []
    for i, w in enumerate(weights):
        layers.append(dense_layer(f"fc{i}", w, previous, activation, normalized=i in norm))
        previous = [f"fc{i}"]
    return LoadedModel(path="<graph>", format="onnx", layers=layers, has_graph=True)


def analyse_model(model: LoadedModel, config: AuditConfig = AuditConfig()) -> FileReport:
    from initaudit.accounting import inventory_from_mapped

    if model.inventory is None:  # a hand-built model is its own complete enumeration
        model.inventory = inventory_from_mapped(model)
    return analyse(model, config)
