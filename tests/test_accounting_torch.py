"""Every tensor a torch checkpoint stores is accounted for (issue 10, PyTorch part).

Files are written by torch itself; the reader never imports torch. ``_accounted`` is the check
the engine applies to ``LoadedModel.inventory``: every weight-like stored tensor is analysed
(its inventory name is a ``model.tensors()`` name) or carries a skip reason.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from initaudit.engine import audit_path
from initaudit.loaders import load
from initaudit.model import Role, SkipReason

pytestmark = pytest.mark.frameworks
torch = pytest.importorskip("torch")
nn = torch.nn


def _accounted(model) -> None:
    assert model.inventory is not None, "loader does not enumerate"
    names = {t.name for t in model.tensors()}
    for s in model.inventory:
        if s.weight_like:
            assert s.name in names or s.skip is not None, s


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))


def test_every_model_of_a_checkpoint_dict_is_read_under_its_key(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net, ema = _net(), _net()
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 16)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": net.state_dict(), "ema": ema.state_dict(),
                "optimizer": opt.state_dict(), "epoch": 3}, path)
    model = load(path)
    _accounted(model)
    got = {t.name: t for t in model.tensors()}
    assert set(net.state_dict()) <= set(got)
    assert {f"ema.{k}" for k in ema.state_dict()} <= set(got)
    np.testing.assert_array_equal(got["ema.2.weight"].load(), ema[2].weight.detach().numpy())
    # optimizer moments are enumerated but are training state, not weights
    opt_entries = [s for s in model.inventory if s.name.startswith("optimizer.")]
    assert opt_entries and not any(s.weight_like for s in opt_entries)
    assert audit_path(path).status.value == "ok"


@pytest.mark.parametrize("kind", ["hook", "parametrization"])
def test_weight_norm_rebuilt_into_the_effective_kernel(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(1)
    net = _net()
    if kind == "hook":
        torch.nn.utils.weight_norm(net[0])
    else:
        torch.nn.utils.parametrizations.weight_norm(net[0])
    path = tmp_path / "wn.pt"
    torch.save(net.state_dict(), path)
    model = load(path)
    _accounted(model)
    k = model.layer("0").kernel
    assert k is not None and k.name == "0.weight" and k.role is Role.KERNEL
    np.testing.assert_allclose(k.load(), net[0].weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert (k.fan_in, k.fan_out) == (16, 32)


@pytest.mark.parametrize("whole_module", [False, True])
def test_pruned_kernel_is_orig_times_mask(tmp_path: Path, whole_module: bool) -> None:
    from torch.nn.utils import prune

    torch.manual_seed(2)
    net = _net()
    prune.l1_unstructured(net[0], "weight", amount=0.5)
    path = tmp_path / "pruned.pt"
    torch.save(net if whole_module else net.state_dict(), path)
    model = load(path)
    _accounted(model)
    k = model.layer("0").kernel
    np.testing.assert_array_equal(k.load(), net[0].weight.detach().numpy())
    assert audit_path(path).status.value == "ok"


@pytest.mark.parametrize("container", ["param", "list", "dict"])
def test_raw_parameters_are_kernels(tmp_path: Path, container: str) -> None:
    torch.manual_seed(3)
    w = nn.Parameter(torch.randn(16, 32) * 0.1)
    obj = {"param": w, "list": [w, nn.Parameter(torch.zeros(16))], "dict": {"w": w}}[container]
    path = tmp_path / "p.pt"
    torch.save(obj, path)
    model = load(path)
    _accounted(model)
    kernels = [t for t in model.tensors() if t.role is Role.KERNEL]
    assert len(kernels) == 1 and kernels[0].shape == (16, 32) and kernels[0].fan_in == 32


def test_jit_freeze_constants_are_the_layers(tmp_path: Path) -> None:
    torch.manual_seed(4)
    frozen = torch.jit.freeze(torch.jit.script(_net().eval()))
    path = tmp_path / "frozen.pt"
    torch.jit.save(frozen, path)
    model = load(path)
    _accounted(model)
    kernels = sorted(t.shape for t in model.tensors() if t.role is Role.KERNEL)
    assert kernels == [(8, 32), (32, 16)]
    assert sum(t.role is Role.BIAS for t in model.tensors()) == 2


def test_dynamic_quantized_module_is_never_ok(tmp_path: Path) -> None:
    q = torch.ao.quantization.quantize_dynamic(_net(), {nn.Linear}, dtype=torch.qint8)
    for what, obj in (("sd", q.state_dict()), ("module", q)):
        path = tmp_path / f"q_{what}.pt"
        torch.save(obj, path)
        model = load(path)
        _accounted(model)
        skipped = [s for s in model.inventory if s.skip is not None and s.weight_like]
        assert skipped, what
        if what == "sd":
            assert any(s.skip is SkipReason.QUANTIZED_NOT_DECODED for s in skipped)
        report = audit_path(path)
        assert report.status.value == "partial" and report.skipped, what


@pytest.mark.parametrize("how", ["script", "export"])
def test_torchscript_and_export_archives_enumerate_their_tensors(tmp_path: Path, how: str) -> None:
    net = _net().eval()
    path = tmp_path / ("m.pt" if how == "script" else "m.pt2")
    if how == "script":
        torch.jit.save(torch.jit.script(net), path)
    else:
        torch.export.save(torch.export.export(net, (torch.randn(2, 16),)), path)
    model = load(path)
    _accounted(model)
    inv = {s.name for s in model.inventory if s.weight_like}
    assert inv == {"0.weight", "2.weight"}
    assert audit_path(path).status.value == "ok"
