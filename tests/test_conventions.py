"""Residual-scaling and other structural conventions are recognised as intentional
(init-schemes.md §5): GPT-2/Megatron's 1/sqrt(2·n_layer), Fixup's zero last layer, zero-init
of the last BatchNorm gamma, LayerScale, T5's factor-based query init."""

from __future__ import annotations

import math

import numpy as np

import initaudit
from initaudit.analysis.conventions import model_depth, residual_branch_end
from initaudit.api import from_arrays
from initaudit.engine import AuditConfig, analyse
from tests.rules import chain_model, he_normal


def _alarms(report):
    return [(f.code, f.tensor or f.layer) for f in report.findings
            if f.severity.value in ("error", "warning")]


def _gpt2_like(n_layer: int, d: int = 128, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"transformer.wte.weight": rng.normal(0, 0.02, (1000, d))}
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        out[p + "attn.c_attn.weight"] = rng.normal(0, 0.02, (d, 3 * d))
        out[p + "attn.c_proj.weight"] = rng.normal(0, 0.02 / math.sqrt(2 * n_layer), (d, d))
        out[p + "mlp.c_fc.weight"] = rng.normal(0, 0.02, (d, 4 * d))
        out[p + "mlp.c_proj.weight"] = rng.normal(0, 0.02 / math.sqrt(2 * n_layer), (4 * d, d))
    return out


def test_depth_comes_from_the_config_or_the_block_indices() -> None:
    model = from_arrays(_gpt2_like(6))
    assert model_depth(model) == 6
    model.metadata["hf_config"] = {"n_layer": 12}
    assert model_depth(model) == 12


def test_gpt2_residual_projections_without_config_are_a_known_scheme() -> None:
    report = initaudit.audit(_gpt2_like(12)).files[0]
    c_proj = [t for t in report.tensors if t.name.endswith("c_proj.weight")]
    assert len(c_proj) == 24
    for t in c_proj:
        assert t.scheme.known and "residual projection" in t.scheme.label, t.scheme.label
        assert abs(t.scheme.expected_std - 0.02 / math.sqrt(24)) < 1e-12
    assert _alarms(report) == []
    assert not any(f.code == "IA401" for f in report.findings)


def test_gpt2_residual_scale_follows_the_config_depth_and_range() -> None:
    model = from_arrays(_gpt2_like(4))
    model.metadata.update({"hf_config": {"n_layer": 4, "initializer_range": 0.02},
                           "initializer_range": 0.02})
    report = analyse(model, AuditConfig())
    t = next(t for t in report.tensors if t.name == "transformer.h.0.attn.c_proj.weight")
    assert abs(t.scheme.expected_std - 0.02 / math.sqrt(8)) < 1e-12


def test_fixup_zero_last_layer_of_a_residual_branch_is_info() -> None:
    rng = np.random.default_rng(1)
    model = chain_model([he_normal(rng, 64, 64), np.zeros((64, 64)), he_normal(rng, 64, 64)])
    model.layers[1].residual = True  # its output joins the skip Add
    report = analyse(model, AuditConfig())
    [f] = [f for f in report.findings if f.code == "IA201"]
    assert f.severity.value == "info" and f.evidence["convention"] == "fixup"
    # the same zeros without a residual Add are a defect
    plain = chain_model([he_normal(rng, 64, 64), np.zeros((64, 64)), he_normal(rng, 64, 64)])
    assert ("IA201", "fc1.weight") in _alarms(analyse(plain, AuditConfig()))


def test_small_residual_branch_scale_is_info_not_vanishing() -> None:
    rng = np.random.default_rng(2)
    # T-Fixup style down-scaled last projection of each block (names say which)
    arrays = {f"layers.{i}.mlp.down_proj.weight": rng.normal(0, 1e-4, (256, 256)) for i in range(4)}
    report = initaudit.audit(arrays).files[0]
    found = [f for f in report.findings if f.code == "IA302"]
    assert found and all(f.severity.value == "info" for f in found)
    assert "residual" in found[0].message
    # an ordinary layer with that scale is still a warning
    plain = initaudit.audit({"fc1.weight": rng.normal(0, 1e-4, (256, 256))}).files[0]
    assert [f.severity.value for f in plain.findings if f.code == "IA302"] == ["warning"]


def test_zero_last_bn_gamma_and_layerscale_are_not_kernels() -> None:
    rng = np.random.default_rng(3)
    arrays = {
        "layer1.0.conv1.weight": rng.normal(0, math.sqrt(2 / (64 * 9)), (64, 64, 3, 3)),
        "layer1.0.bn2.weight": np.zeros(64),  # timm zero_init_last
        "layer1.0.bn2.bias": np.zeros(64),
        "blocks.0.ls1.gamma": np.full(192, 1e-5),  # LayerScale
    }
    assert _alarms(initaudit.audit(arrays).files[0]) == []


def test_t5_query_projection_uses_the_config_factors() -> None:
    rng = np.random.default_rng(4)
    d_model, d_kv, heads = 128, 32, 4
    arrays = {"encoder.block.0.layer.0.SelfAttention.q.weight":
              rng.normal(0, (d_model * d_kv) ** -0.5, (heads * d_kv, d_model))}
    model = from_arrays(arrays)
    model.metadata["hf_config"] = {"model_type": "t5", "d_model": d_model, "d_kv": d_kv,
                                   "num_heads": heads, "initializer_factor": 1.0}
    t = analyse(model, AuditConfig()).tensors[0]
    assert t.scheme.label.startswith("T5 query"), t.scheme.label


def test_residual_branch_end_by_graph_or_by_name() -> None:
    from initaudit.model import Layer, Role, WeightTensor

    def tensor(name):
        return WeightTensor(name=name, layer=name.rsplit(".", 1)[0], op="Linear", role=Role.KERNEL,
                            shape=(4, 4), dtype="float32", load=lambda: np.zeros((4, 4)))

    assert residual_branch_end(tensor("model.layers.3.mlp.down_proj.weight"), None)
    assert residual_branch_end(tensor("transformer.h.0.attn.c_proj.weight"), None)
    assert not residual_branch_end(tensor("model.layers.3.mlp.up_proj.weight"), None)
    assert not residual_branch_end(tensor("fc2.weight"), None)  # no block: not a branch
    layer = Layer(name="x", op="Gemm", residual=True)
    assert residual_branch_end(tensor("x.weight"), layer)


# ---- structured kernels: identity, Dirac, sparse, orthogonal recurrent ------------------------

def _scheme(report, name):
    return next(t.scheme for t in report.tensors if t.name == name)


def test_identity_dirac_and_sparse_kernels_are_named_and_clean() -> None:
    rng = np.random.default_rng(5)
    dirac = np.zeros((32, 16, 3, 3))  # torch.nn.init.dirac_: out > in leaves units at zero
    for i in range(16):
        dirac[i, i, 1, 1] = 1.0
    sparse = rng.normal(0, 0.01, (128, 256))  # torch.nn.init.sparse_(w, 0.1)
    for col in range(256):
        sparse[rng.choice(128, 13, replace=False), col] = 0.0
    arrays = {"eye.weight": np.eye(64) * 2.0, "dirac.weight": dirac, "sparse.weight": sparse}
    report = initaudit.audit(arrays, activation=["*=relu"]).files[0]
    assert _scheme(report, "eye.weight").rule == "identity"
    assert _scheme(report, "eye.weight").gain == 2.0
    assert _scheme(report, "dirac.weight").rule == "dirac"
    sp = _scheme(report, "sparse.weight")
    assert sp.rule == "sparse" and abs(sp.evidence["zero_share"] - 0.1) < 0.01
    assert _alarms(report) == []
    assert {t.state["state"] for t in report.tensors if t.state} == {"initialized"}


def test_orthogonal_recurrent_kernel_with_gain() -> None:
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.standard_normal((256, 64)))  # Keras LSTM recurrent: (H, 4H)
    arrays = {"lstm.weight_hh_l0": (q.T * 1.5)}
    report = initaudit.audit(arrays).files[0]
    s = report.tensors[0].scheme
    assert s.rule == "orthogonal" and abs(s.gain - 1.5) < 1e-6
    assert _alarms(report) == []


# ---- library conventions as data (analysis/convention_tables.py) ---------------------------------

def test_every_convention_row_names_its_library_source() -> None:
    import re

    from initaudit.analysis.convention_tables import BY_DESIGN, DEFAULT_INITS

    for row in (*BY_DESIGN, *DEFAULT_INITS):
        assert row.library and row.source and ".py" in row.source, row
    for row in BY_DESIGN:
        re.compile(row.pattern)


def test_by_design_rows_match_the_tensors_they_are_for() -> None:
    from initaudit.analysis.convention_tables import Why, by_design

    assert by_design("stages.0.blocks.0.mlp.grn.weight", "zero").why is Why.LAYER_SCALE
    assert by_design("reg_token", "small").why is Why.TOKEN
    assert by_design("heads.head.weight", "zero").why is Why.HEAD
    assert by_design("base.lora_B.weight", "zero").why is Why.GATE
    # a documented large scale only for the model types that document it
    assert by_design("lm_head.weight", "large", "t5") is not None
    assert by_design("lm_head.weight", "large", "gpt2") is None
    # hidden kernels are never by design
    assert by_design("encoder.layer.0.intermediate.dense.weight", "zero") is None
    assert by_design("blocks.3.mlp.fc1.weight", "small") is None


def test_library_defaults_are_rows() -> None:
    from initaudit.analysis.convention_tables import default_init
    from initaudit.model import Convention

    assert default_init(Convention.TORCH, "torch_default", "uniform") is not None
    assert default_init(Convention.KERAS, "glorot", "uniform") is not None
    assert default_init(Convention.TORCH, "glorot", "uniform") is None
    assert default_init(Convention.TORCH, "fixed", "normal", std=0.01) is not None
    assert default_init(Convention.TORCH, "fixed", "normal", std=0.02) is None


def test_deformable_attention_zero_projections_are_by_design_only_in_those_models() -> None:
    from initaudit.analysis.convention_tables import by_design

    name = "decoder.layers.0.encoder_attn.sampling_offsets.weight"
    assert by_design(name, "zero", "d_fine") is not None
    assert by_design(name, "zero", "deformable_detr") is not None
    assert by_design(name, "zero", "llama") is None
    assert by_design("decoder.layers.0.gateway.gate.weight", "zero", "d_fine") is not None
    # an ordinary gated MLP's gate_proj is a hidden kernel in any model
    assert by_design("model.layers.0.mlp.gate_proj.weight", "zero", "llama") is None


def test_layer_scale_row_is_limited_to_vectors() -> None:
    from initaudit.analysis.convention_tables import Why, by_design

    assert by_design("blocks.0.ls1.gamma", "small", None, (64,)).why is Why.LAYER_SCALE
    assert by_design("stages.0.blocks.0.mlp.grn.weight", "zero", None, (1, 1, 1, 64)) is not None
    assert by_design("blocks.0.ls.weight", "zero", None, (64, 64)) is None
    assert by_design("blocks.0.gamma", "small", None, (64, 3, 3, 3)) is None
