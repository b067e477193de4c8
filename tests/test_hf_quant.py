"""Quantized Hugging Face checkpoints: GPTQ/AWQ int4, LLM.int8 and FP8 decoded, bnb-4bit named.

The packing below reproduces the writers exactly (auto-gptq / autoawq are CUDA builds that do not
install here):
- GPTQ: AutoGPTQ auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py ``QuantLinear.pack`` (rows of
  ``32 // bits`` input features per int32, lowest bits first; ``zeros -= 1`` before packing the
  zeros along output columns).
- AWQ: AutoAWQ awq/modules/linear/gemm.py ``WQLinear_GEMM.from_linear`` (columns packed in the
  order ``[0, 2, 4, 6, 1, 3, 5, 7]``; zeros alike, no offset).
The float weights quantized come from a real transformers model built from a tiny config.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from initaudit.engine import audit_path
from initaudit.loaders import load

pytestmark = pytest.mark.frameworks
torch = pytest.importorskip("torch")


transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")


def _tiny_llama(tmp: Path):
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=1, num_attention_heads=4,
                                   num_key_value_heads=4, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg)
    return cfg, model


def _rtn(w: torch.Tensor, bits: int, group: int):
    """Asymmetric round-to-nearest per (row, group): what GPTQ/AWQ store (codes, scales, zeros)."""
    out_f, in_f = w.shape
    wg = w.reshape(out_f, in_f // group, group)
    lo, hi = wg.amin(-1), wg.amax(-1)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp(min=1e-8)
    zero = torch.round(-lo / scale).clamp(0, 2 ** bits - 1)
    q = torch.clamp(torch.round(wg / scale[..., None]) + zero[..., None], 0, 2 ** bits - 1)
    deq = ((q - zero[..., None]) * scale[..., None]).reshape(out_f, in_f)
    return q.reshape(out_f, in_f).to(torch.int64), scale, zero.to(torch.int64), deq


def _pack_gptq(q, scale, zero, bits: int, group: int):
    # qlinear_cuda_old.pack: intweight (in, out); qweight[row] |= intweight[j] << (bits*(j-i))
    intweight = q.t().contiguous().numpy().astype(np.uint32)
    per = 32 // bits
    qweight = np.zeros((intweight.shape[0] // per, intweight.shape[1]), dtype=np.uint32)
    for row in range(qweight.shape[0]):
        for j in range(per):
            qweight[row] |= intweight[row * per + j] << (bits * j)
    zeros = (zero.t().contiguous().numpy() - 1).astype(np.uint32)  # zeros -= 1 (v1 format)
    qzeros = np.zeros((zeros.shape[0], zeros.shape[1] // per), dtype=np.uint32)
    for col in range(qzeros.shape[1]):
        for j in range(per):
            qzeros[:, col] |= zeros[:, col * per + j] << (bits * j)
    g_idx = torch.arange(q.shape[1], dtype=torch.int32) // group
    return (torch.from_numpy(qweight.astype(np.int32)), torch.from_numpy(qzeros.astype(np.int32)),
            scale.t().contiguous().half(), g_idx)


def _pack_awq(q, scale, zero):
    order = [0, 2, 4, 6, 1, 3, 5, 7]  # AWQ_ORDER
    iw = q.t().contiguous().numpy().astype(np.uint32)  # (in, out)
    iz = zero.t().contiguous().numpy().astype(np.uint32)  # (groups, out)
    qweight = np.zeros((iw.shape[0], iw.shape[1] // 8), dtype=np.uint32)
    qzeros = np.zeros((iz.shape[0], iz.shape[1] // 8), dtype=np.uint32)
    for col in range(qweight.shape[1]):
        for i in range(8):
            qweight[:, col] |= iw[:, col * 8 + order[i]] << (i * 4)
            qzeros[:, col] |= iz[:, col * 8 + order[i]] << (i * 4)
    return (torch.from_numpy(qweight.astype(np.int32)), torch.from_numpy(qzeros.astype(np.int32)),
            scale.t().contiguous().half())


def _save(tmp: Path, cfg, sd: dict, quant: dict | None) -> Path:
    folder = tmp / "model"
    folder.mkdir()
    conf = cfg.to_dict()
    if quant:
        conf["quantization_config"] = quant
    (folder / "config.json").write_text(json.dumps(conf))
    safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()},
                                str(folder / "model.safetensors"))
    return folder


def _quantized_sd(model, method: str, bits: int = 4, group: int = 32):
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    expected = {}
    for name in list(sd):
        if not (name.endswith("_proj.weight") and "layers." in name):
            continue
        prefix = name[: -len(".weight")]
        w = sd.pop(name).float()
        q, scale, zero, deq = _rtn(w, bits, group)
        if method == "gptq":
            qw, qz, sc, gi = _pack_gptq(q, scale, zero, bits, group)
            sd.update({f"{prefix}.qweight": qw, f"{prefix}.qzeros": qz, f"{prefix}.scales": sc,
                       f"{prefix}.g_idx": gi})
        else:
            qw, qz, sc = _pack_awq(q, scale, zero)
            sd.update({f"{prefix}.qweight": qw, f"{prefix}.qzeros": qz, f"{prefix}.scales": sc})
        # the reference dequantization with the fp16 scales the file stores
        s16 = scale.half().float()
        expected[f"{prefix}.qweight"] = ((q - zero.repeat_interleave(group, 1)).float()
                                         * s16.repeat_interleave(group, 1)).numpy()
        del deq
    return sd, expected


def _check_decoded(folder: Path, expected: dict) -> None:
    model = load(folder)
    got = {t.name: t for t in model.tensors()}
    for name, want in expected.items():
        t = got[name]
        assert t.role.value == "kernel" and t.shape == want.shape
        assert (t.fan_in, t.fan_out) == (want.shape[1], want.shape[0])
        np.testing.assert_allclose(t.load(), want, rtol=0, atol=1e-6)
    report = audit_path(folder)
    assert report.status.value == "ok", (report.error, report.skipped)
    assert not any(f.code in ("IA102", "IA101") and "proj" in (f.tensor or "")
                   for f in report.findings), [f.to_dict() for f in report.findings]


@pytest.mark.parametrize("method", ["gptq", "awq"])
def test_gptq_awq_int4_decoded_to_the_dequantized_kernel(tmp_path: Path, method: str) -> None:
    cfg, model = _tiny_llama(tmp_path)
    sd, expected = _quantized_sd(model, method)
    quant = {"quant_method": method, "bits": 4, "group_size": 32}
    if method == "awq":
        quant.update({"version": "gemm", "zero_point": True})
    folder = _save(tmp_path, cfg, sd, quant)
    _check_decoded(folder, expected)


def test_gptq_without_config_recognised_by_names(tmp_path: Path) -> None:
    _cfg, model = _tiny_llama(tmp_path)
    sd, expected = _quantized_sd(model, "gptq")
    path = tmp_path / "gptq.safetensors"
    safetensors_torch.save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    loaded = load(path)
    got = {t.name: t for t in loaded.tensors()}
    for name, want in expected.items():
        np.testing.assert_allclose(got[name].load(), want, rtol=0, atol=1e-6)


def test_llm_int8_int8_and_fp8_scaled(tmp_path: Path) -> None:
    cfg, model = _tiny_llama(tmp_path)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    expected = {}
    for name in list(sd):
        if name.endswith("mlp.down_proj.weight"):  # bitsandbytes Int8Params: CB, SCB = absmax rows
            w = sd[name].float()
            scb = w.abs().amax(1)
            cb = torch.round(w * 127 / scb[:, None]).to(torch.int8)
            sd[name], sd[name[: -len("weight")] + "SCB"] = cb, scb
            expected[name] = (cb.float() * scb[:, None] / 127).numpy()
        elif name.endswith("self_attn.o_proj.weight"):  # compressed-tensors INT8 per-channel
            w = sd[name].float()
            scale = w.abs().amax(1, keepdim=True) / 127.0
            q = torch.round(w / scale).to(torch.int8)
            sd[name], sd[name + "_scale"] = q, scale
            expected[name] = (q.float() * scale).numpy()
        elif name.endswith("mlp.up_proj.weight"):  # compressed-tensors FP8 per-channel
            w = sd[name].float()
            scale = (w.abs().amax(1, keepdim=True) / 448.0)
            f8 = (w / scale).to(torch.float8_e4m3fn)
            sd[name], sd[name + "_scale"] = f8, scale
            expected[name] = (f8.float() * scale).numpy()
    folder = _save(tmp_path, cfg, sd, None)
    report = audit_path(folder)
    assert report.status.value == "ok", (report.error, report.skipped)
    assert not [f for f in report.findings if "down_proj" in (f.tensor or "")
                or "up_proj" in (f.tensor or "")], [f.to_dict() for f in report.findings]
    got = {t.name: t for t in load(folder).tensors()}
    for name, want in expected.items():
        assert got[name].role.value == "kernel"
        np.testing.assert_allclose(got[name].load(), want, rtol=1e-6, atol=1e-7)


def test_bnb_4bit_named_in_skipped_never_read_as_floats(tmp_path: Path) -> None:
    # the tensor names and dtypes bitsandbytes Params4bit writes (weight packed uint8 + quant state)
    cfg, model = _tiny_llama(tmp_path)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    name = "model.layers.0.mlp.gate_proj.weight"
    n = sd[name].numel()
    sd[name] = torch.randint(0, 255, (n // 2, 1), dtype=torch.uint8)
    sd[name + ".absmax"] = torch.rand(n // 64)
    sd[name + ".quant_map"] = torch.linspace(-1, 1, 16)
    sd[name + ".quant_state.bitsandbytes__nf4"] = torch.frombuffer(
        bytearray(json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "float32",
                              "shape": [128, 64]}).encode()), dtype=torch.uint8)
    folder = _save(tmp_path, cfg, sd, {"quant_method": "bitsandbytes", "load_in_4bit": True})
    loaded = load(folder)
    assert name not in {t.name for t in loaded.tensors()}
    assert any(n == name and "bitsandbytes" in r for n, r in loaded.skipped)
    report = audit_path(folder)
    assert report.status.value == "partial"
    assert not any(name == f.tensor for f in report.findings)


def test_weights_outside_the_index_are_listed(tmp_path: Path) -> None:
    _cfg, model = _tiny_llama(tmp_path)
    folder = tmp_path / "repo"
    model.save_pretrained(folder)  # real transformers layout: config.json + model.safetensors
    assert audit_path(folder).status.value == "ok"
    (folder / "onnx").mkdir()
    safetensors_torch.save_file({"w": torch.randn(8, 8)}, str(folder / "onnx" / "extra.safetensors"))
    (folder / "original").mkdir()
    torch.save(model.state_dict(), folder / "original" / "consolidated.00.pth")
    torch.save({"lr": 1.0}, folder / "training_args.bin")  # Trainer state: not weights
    report = audit_path(folder)
    listed = {s["name"] for s in report.skipped}
    assert listed == {"onnx/extra.safetensors", "original/consolidated.00.pth"}
    assert report.status.value == "partial"
