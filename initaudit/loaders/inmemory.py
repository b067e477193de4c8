"""In-memory framework objects (``initaudit.audit(model)`` in a training script).

The object is written with its own framework to a temporary file and read back with initaudit's
file loaders, so an in-memory model gets exactly the verdicts its saved checkpoint would. This
module is imported only when such an object is passed, so torch/keras are already imported by
the caller.

For torch, a ``torch.fx`` trace of the module adds what a pickle cannot show: functional
activations called inside ``forward`` (``F.relu(self.fc1(x))``). Tracing runs the *user's own*
module code symbolically in the user's own process, on an object they constructed; it is never
done for a file. When tracing fails (data-dependent control flow), the Sequential order is used.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from ..activations import parse_activation
from ..model import Activation, ActivationKind, LoadedModel, Loader
from .torch_loader import (
    ACTIVATION_FUNCS,
    ACTIVATION_MODULES,
    NORM_FUNCS,
    NORM_MODULES,
    PASS_THROUGH_FUNCS,
    PASS_THROUGH_MODULES,
)

# the torch module and function vocabulary is the file loader's (torch_loader): an in-memory model
# is walked with the same pass-through, normalization and activation tables as its saved form
_PASS_CALLS = frozenset(name.strip("_") for name in PASS_THROUGH_FUNCS)
_NORM_CALLS = frozenset(name.strip("_") for name in NORM_FUNCS)
_ACT_CALLS = {name.strip("_"): spec for name, spec in ACTIVATION_FUNCS.items()}


def _is_hf_pretrained(module: Any) -> bool:
    """A Hugging Face ``PreTrainedModel``: it has ``save_pretrained`` and a config with a
    ``model_type`` (what the saved folder's config.json carries)."""
    config = getattr(module, "config", None)
    return (
        callable(getattr(module, "save_pretrained", None))
        and isinstance(getattr(config, "model_type", None), str)
        and callable(getattr(config, "to_dict", None))
    )


def from_hf_pretrained(module: Any) -> LoadedModel:
    """Save the model as ``save_pretrained`` does (safetensors + config.json) and read the
    folder back: the in-memory model gets exactly the activations its saved form gets from
    ``model.config`` (the hidden activation, GPT-2's depth...)."""
    from . import LoadOptions, load

    def save(folder: Path) -> None:
        module.save_pretrained(os.fspath(folder), safe_serialization=True)

    def read(folder: Path) -> LoadedModel:
        single = folder / "model.safetensors"
        return load(single if single.is_file() else folder, LoadOptions())

    return _round_trip(save, read, "", module, "pytorch")


def from_torch_module(module: Any) -> LoadedModel:
    import torch

    from . import LoadOptions
    from .torch_loader import load as load_torch

    if _is_hf_pretrained(module):
        try:
            return from_hf_pretrained(module)
        except Exception:  # an exotic save_pretrained: the plain torch route still works
            pass

    def save(path: Path) -> None:
        try:
            torch.save(module, path)  # whole module: Sequential order gives activations
        except Exception:
            torch.save(module.state_dict(), path)  # unpicklable attributes: weights only

    model = _round_trip(
        save, lambda p: load_torch(p, "pytorch-zip", LoadOptions()), "model.pt", module, "pytorch"
    )
    # the pickle was written just now from the caller's live object: its class references are
    # the caller's own code, already imported, not content from a file (issue 11 fails closed
    # on files, which would flag a user class)
    model.unsafe = [u for u in model.unsafe if not u.what.startswith("pickle ")]
    traced = _fx_activations(module)
    if traced is not None:
        activations, inputs, normalized = traced
        for layer in model.layers:
            if layer.name in activations:
                layer.activation = activations[layer.name]
                layer.inputs = inputs.get(layer.name, [])
                layer.normalized = layer.normalized or layer.name in normalized
        model.has_graph = True
        model.notes = [n for n in model.notes if "functional activations" not in n]
    return model


def _fx_activations(
    module: Any,
) -> tuple[dict[str, Activation | None], dict[str, list[str]], set[str]] | None:
    """Activation after each weighted submodule, from a symbolic trace of forward."""
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(module).graph
    except Exception:
        return None
    named = dict(module.named_modules())

    def is_weighted(node: Any) -> bool:
        if node.op != "call_module":
            return False
        sub = named.get(node.target)
        return (
            sub is not None
            and any(True for _ in sub.parameters(recurse=False))
            and type(sub).__name__ not in NORM_MODULES
            and type(sub).__name__ != "PReLU"
        )

    def classify(node: Any) -> tuple[str, Any]:
        """('pass'|'norm'|'act'|'weighted'|'output'|'other', activation)"""
        if node.op == "output":
            return "output", None
        if node.op == "call_module":
            cls = type(named.get(node.target)).__name__
            if is_weighted(node):
                return "weighted", None
            if cls in PASS_THROUGH_MODULES:
                return "pass", None
            if cls in NORM_MODULES:
                return "norm", None
            if cls in ACTIVATION_MODULES:
                sub = named.get(node.target)
                vocab, attr = ACTIVATION_MODULES[cls]
                param = getattr(sub, attr, None) if attr else None
                if cls == "PReLU":
                    assert sub is not None  # type(None) is not PReLU
                    param = float(sub.weight.detach().float().mean())
                return "act", parse_activation(
                    vocab,
                    param=param if isinstance(param, (int, float)) else None,
                    source="fx",
                )
            return "other", None
        if node.op in ("call_function", "call_method"):
            name = getattr(node.target, "__name__", str(node.target)).lower().strip("_")
            if name in _PASS_CALLS:
                return "pass", None
            if name in _NORM_CALLS:
                return "norm", None
            if name in _ACT_CALLS:
                vocab, index, keyword = _ACT_CALLS[name]
                param = None
                if index is not None and len(node.args) > index:
                    param = node.args[index]
                elif keyword is not None:
                    param = node.kwargs.get(keyword)
                return "act", parse_activation(
                    vocab,
                    param=param if isinstance(param, (int, float)) else None,
                    source="fx",
                )
        return "other", None

    activations: dict[str, Activation | None] = {}
    normalized: set[str] = set()
    inputs: dict[str, list[str]] = {}
    for node in graph.nodes:
        if not is_weighted(node):
            continue
        name = node.target
        # forward: follow single-user chains through pass-through ops and norms
        result: Activation | None = None
        current = node
        seen_norm = False
        for _ in range(32):
            users = list(current.users)
            if len(users) != 1:
                break
            kind, act = classify(users[0])
            if kind == "pass":
                current = users[0]
                continue
            if kind == "norm":
                seen_norm = True
                current = users[0]
                continue
            if kind == "act":
                result = act
            elif kind in ("weighted", "output"):
                result = Activation(ActivationKind.LINEAR, None, "fx", "linear")
            break
        activations[name] = result
        if seen_norm:
            normalized.add(name)
        inputs[name] = sorted(_upstream_weighted(node, is_weighted))
    return activations, inputs, normalized


def _upstream_weighted(node: Any, is_weighted: Any) -> set[str]:
    """Names of the weighted modules whose outputs reach ``node`` (stopping at each one)."""
    found: set[str] = set()
    stack = list(node.all_input_nodes)
    seen: set[int] = set()
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if is_weighted(n):
            found.add(n.target)
            continue
        stack.extend(n.all_input_nodes)
    return found


def from_keras_model(model: Any) -> LoadedModel:
    from . import LoadOptions
    from .keras_loader import load as load_keras

    loaded = _round_trip(
        lambda p: model.save(os.fspath(p)),
        lambda p: load_keras(p, "keras", LoadOptions()),
        "model.keras",
        model,
        "keras",
    )
    _keras_layer_activations(model, loaded)
    return loaded


def _keras_layer_activations(live: Any, loaded: LoadedModel) -> None:
    """A subclassed Keras model saves no layer graph: its ``.keras`` config does not say which
    activation each ``Dense``/``Conv`` applies. The live object does: each weighted sublayer's
    own ``activation`` attribute, found by the attribute path the loader names the layer with
    (``d1``, ``encoder/d1``). Only layers the file left without an activation are filled; an
    activation applied inside ``call`` stays unknown (and is reported as such)."""
    filled = 0
    for layer in loaded.layers:
        if layer.activation is not None:
            continue
        obj: Any = live
        for part in layer.name.replace(".", "/").split("/"):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        act = getattr(obj, "activation", None) if obj is not None else None
        name = getattr(act, "__name__", None)
        if not isinstance(name, str):
            continue
        parsed = parse_activation(name, source="keras-layer")
        if parsed is not None:
            layer.activation = parsed
            filled += 1
    if filled:
        loaded.notes = [n for n in loaded.notes if "match no layer of the config" not in n]
        unknown = [layer.name for layer in loaded.layers if layer.activation is None]
        if not unknown:
            loaded.notes.append(
                f"activations of {filled} layer(s) from the live model's layers "
                "(a subclassed model's file has no layer graph)"
            )


def _round_trip(
    save: Callable[[Path], None],
    read: Callable[[Path], LoadedModel],
    filename: str,
    obj: Any,
    framework: str,
) -> LoadedModel:
    """Write ``obj`` with its own framework to a temporary file (``filename`` "" : the temporary
    folder itself) and read it back with ours."""
    with tempfile.TemporaryDirectory(prefix="initaudit-") as tmp:
        path = Path(tmp) / filename if filename else Path(tmp)
        save(path)
        model = read(path)
        # the loader's lazy arrays map the temp file: materialise before it disappears
        for tensor in model.tensors():
            data = tensor.load()
            tensor.load = cast(Loader, lambda d=data.copy(): d)
    model.path = f"<{type(obj).__name__}>"
    model.format = "in-memory"
    model.framework = framework
    return model
