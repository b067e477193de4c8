"""PEFT adapters beyond LoRA: recognise each factor and say how PEFT initialises it.

Without this, LoHa/LoKr/VeRA/IA3 factors have no ``weight`` leaf and end up as role ``other``:
analysed by no rule, under a green "no findings". The table below is PEFT's own init
(peft/tuners/<method>/layer.py ``reset_*_parameters`` and vera/model.py ``_kaiming_init``,
peft 0.21): random factors become kernels in torch's layout so the scheme identification and
the init rules see them; factors that start constant on purpose (so the adapter starts as a
no-op) stay role ``other`` with the documented value in a note, never flagged as constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..analysis.fans import torch_fans
from ..model import Layer, LoadedModel, Role

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Factor:
    method: str
    random: bool  # True: a random init -> analysed as a kernel
    init: str  # PEFT's init, as its source writes it


# leaf name (adapter-name segment already dropped by save_pretrained) -> factor
FACTORS: dict[str, Factor] = {
    # LoRA (lora/layer.py reset_lora_parameters, init_lora_weights=True)
    "lora_A": Factor("LoRA", True, "kaiming_uniform_(a=sqrt(5))"),
    "lora_B": Factor("LoRA", False, "zeros_"),
    "lora_embedding_A": Factor("LoRA", False, "zeros_"),
    "lora_embedding_B": Factor("LoRA", True, "normal_"),
    "lora_magnitude_vector": Factor("DoRA", False, "column norms of the base weight"),
    # LoHa (loha/layer.py reset_adapter_parameters): w2_b zero so the Hadamard product is 0
    "hada_w1_a": Factor("LoHa", True, "kaiming_uniform_(a=sqrt(5))"),
    "hada_w1_b": Factor("LoHa", True, "kaiming_uniform_(a=sqrt(5))"),
    "hada_w2_a": Factor("LoHa", True, "kaiming_uniform_(a=sqrt(5))"),
    "hada_w2_b": Factor("LoHa", False, "zeros_"),
    "hada_t1": Factor("LoHa", True, "kaiming_uniform_(a=sqrt(5))"),
    "hada_t2": Factor("LoHa", True, "kaiming_uniform_(a=sqrt(5))"),
    # LoKr (lokr/layer.py reset_adapter_parameters): w1 (or w1_a) zero
    "lokr_w1": Factor("LoKr", False, "zeros_"),
    "lokr_w1_a": Factor("LoKr", False, "zeros_"),
    "lokr_w1_b": Factor("LoKr", True, "kaiming_uniform_(a=sqrt(5))"),
    "lokr_w2": Factor("LoKr", True, "kaiming_uniform_(a=sqrt(5))"),
    "lokr_w2_a": Factor("LoKr", True, "kaiming_uniform_(a=sqrt(5))"),
    "lokr_w2_b": Factor("LoKr", True, "kaiming_uniform_(a=sqrt(5))"),
    "lokr_t2": Factor("LoKr", True, "kaiming_uniform_(a=sqrt(5))"),
    # VeRA (vera/model.py _kaiming_init: He uniform, gain sqrt(2), from a seeded generator,
    # shared by every layer; vera/layer.py reset_vera_parameters: lambda_b 0, lambda_d d_initial)
    "vera_A": Factor("VeRA", True, "kaiming uniform (gain sqrt(2)), shared, seeded"),
    "vera_B": Factor("VeRA", True, "kaiming uniform (gain sqrt(2)), shared, seeded"),
    "vera_lambda_b": Factor("VeRA", False, "zeros_"),
    "vera_lambda_d": Factor("VeRA", False, "fill_(d_initial=0.1)"),
    # IA3 (ia3/layer.py update_layer: constant_(1.0))
    "ia3_l": Factor("IA3", False, "constant_(1.0)"),
}


def _factor_of(name: str) -> tuple[str, Factor] | None:
    parts = name.split(".")
    # lora_A.weight / lora_A.default.weight / hada_w1_a / hada_w1_a.default
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in FACTORS:
            return ".".join(parts[:i]), FACTORS[parts[i]]
    return None


def apply(model: LoadedModel, directory: Path | None) -> None:
    """Give PEFT factors their role and documented init (in place)."""
    found: dict[str, int] = {}
    new_layers: dict[str, Layer] = {}
    keep_loose = []
    moved: set[int] = set()
    for t in model.tensors():
        hit = _factor_of(t.name)
        if hit is None:
            continue
        _module, f = hit
        found[f.method] = found.get(f.method, 0) + 1
        t.op = f.method
        t.notes.append(f"PEFT {f.method} factor, initialised by {f.init}")
        if f.random and len(t.shape) >= 2:
            t.role = Role.KERNEL
            t.fan_in, t.fan_out = torch_fans(t.shape)
            t.unit_axis = 0
            if t in model.loose_tensors:
                layer_name = t.name.rpartition(".")[0] if t.name.endswith(".weight") else t.name
                t.layer = layer_name
                new_layers.setdefault(
                    layer_name, Layer(name=layer_name, op=f.method)
                ).tensors.append(t)
                moved.add(id(t))
        elif t.role in (Role.KERNEL, Role.EMBEDDING, Role.RECURRENT) and f.method != "LoRA":
            # (LoRA's zero B keeps its kernel role: IA201 knows it is zero by design)
            # constant by design (the adapter starts as a no-op): not a random kernel
            t.role, t.fan_in, t.fan_out, t.unit_axis = Role.OTHER, None, None, None
    if not found:
        return
    for t in model.loose_tensors:
        if id(t) not in moved:
            keep_loose.append(t)
    model.loose_tensors = keep_loose
    model.layers.extend(new_layers.values())
    is_adapter = directory is not None and (directory / ADAPTER_CONFIG).is_file()
    model.framework = model.framework if not is_adapter else "peft"
    model.notes.append(
        "PEFT adapter factors: "
        + ", ".join(f"{n} {m}" for m, n in found.items())
        + "; random factors analysed as kernels, factors constant by design "
        "(zeros/ones so the adapter starts as a no-op) noted with their init"
    )
