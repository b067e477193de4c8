"""The rule catalogue: one module per rule, each registering itself with ``@rule``.

Every rule has a page in ``rules/<name>.md`` at the repository top level (checked one-to-one by
tests/test_rule_catalogue.py).
"""

from __future__ import annotations

from . import (  # noqa: F401  (imports register the rules)
    constant_weights,
    dead_units,
    duplicate_neurons,
    exploding_init,
    he_before_saturating,
    leaky_relu_gain,
    nonfinite_weights,
    nonzero_mean,
    selu_without_lecun,
    signal_propagation,
    under_scaled_for_relu,
    unrecognized_init,
    unsafe_content,
    vanishing_init,
)
from .base import Rule, RuleContext, Scope, TensorAnalysis, model_rule, registry, rule, tensor_rule

__all__ = [
    "Rule",
    "RuleContext",
    "Scope",
    "TensorAnalysis",
    "find_rule",
    "model_rule",
    "registry",
    "rule",
    "tensor_rule",
]


def find_rule(name_or_code: str) -> Rule | None:
    key = name_or_code.strip()
    for r in registry().values():
        if key.upper() == r.code or key.lower() == r.name:
            return r
    return None
