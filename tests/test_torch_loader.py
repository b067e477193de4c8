"""PyTorch checkpoints written by the real torch, read back with numpy alone.

torch is only used to WRITE files (and to compute the expected values); the reader never imports
it, which one test checks in a fresh interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from initaudit.loaders import detect_format, load
from initaudit.model import ActivationKind, Role

pytestmark = pytest.mark.frameworks
torch = pytest.importorskip("torch")
nn = torch.nn

REPO = Path(__file__).resolve().parents[1]


def _np(t) -> np.ndarray:
    t = t.detach()
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn):
        return t.contiguous().view(torch.uint8 if t.dtype == torch.float8_e4m3fn else torch.int16).numpy()
    return t.numpy()


def _bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view(np.uint8 if a.dtype.itemsize == 1 else np.int16 if a.dtype.itemsize == 2 else
                  np.int32 if a.dtype.itemsize == 4 else np.int64)


def _assert_identical(model, expected: dict) -> None:
    got = {t.name: np.asarray(t.load()) for t in model.tensors()}
    assert set(expected) <= set(got), sorted(set(expected) - set(got))
    for name, t in expected.items():
        want = _np(t)
        assert got[name].shape == want.shape, name
        assert np.array_equal(_bits(got[name]), _bits(want)), name


def _acts(model) -> dict:
    return {layer.name: (layer.activation.kind, layer.activation.param) if layer.activation else None
            for layer in model.layers}


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 8, 3, groups=4), nn.LeakyReLU(0.2))
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.features(x).mean((2, 3)))


# --------------------------------------------------------------------------------------------
# state dicts and checkpoint dicts
# --------------------------------------------------------------------------------------------
def test_state_dict_zip_bit_identical_with_torch_fans(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    path = tmp_path / "sd.pt"
    torch.save(net.state_dict(), path)
    assert detect_format(path) == "pytorch-zip"
    model = load(path)
    _assert_identical(model, net.state_dict())
    assert not model.has_graph and not model.unsafe
    conv = model.layer("features.3").kernel
    assert conv.shape == (8, 2, 3, 3) and (conv.fan_in, conv.fan_out) == (2 * 9, 8 * 9)
    head = model.layer("head").kernel
    assert (head.fan_in, head.fan_out, head.unit_axis) == (8, 2, 0)
    assert all(layer.activation is None for layer in model.layers)  # no graph: unknown, not guessed


def test_nested_checkpoint_dict_takes_model_weights(tmp_path: Path) -> None:
    torch.manual_seed(1)
    net = Net()
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    path = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": net.state_dict(), "optimizer_state_dict": opt.state_dict(),
                "epoch": 7}, path)
    model = load(path)
    _assert_identical(model, net.state_dict())
    names = [t.name for t in model.tensors()]
    assert sorted(names) == sorted(net.state_dict())  # no optimizer moments, names as stored
    assert any("model_state_dict" in n for n in model.notes)


def test_lightning_like_checkpoint_with_numpy_hyperparameters(tmp_path: Path) -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    sd = {f"model.{k}": v for k, v in net.state_dict().items()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(3, 4)).sum().backward()
    opt.step()
    path = tmp_path / "lightning.ckpt"
    torch.save({"epoch": 3, "global_step": 30, "pytorch-lightning_version": "2.4.0",
                "state_dict": sd, "loops": {}, "callbacks": {},
                "optimizer_states": [opt.state_dict()], "lr_schedulers": [],
                "hyper_parameters": {"lr": np.float64(0.1), "sizes": np.array([4, 4, 1]),
                                     "tags": {"a", "b"}, "blob": b"\x00\x01"}}, path)
    model = load(path)
    assert not model.unsafe
    _assert_identical(model, sd)
    assert sorted(t.name for t in model.tensors()) == sorted(sd)


def test_hf_style_pytorch_model_bin(tmp_path: Path) -> None:
    torch.manual_seed(3)
    sd = {"embeddings.word_embeddings.weight": torch.randn(50, 8),
          "encoder.layer.0.attention.self.query.weight": torch.randn(8, 8) * 0.02,
          "encoder.layer.0.attention.self.query.bias": torch.zeros(8),
          "encoder.layer.0.output.LayerNorm.weight": torch.ones(8)}
    path = tmp_path / "pytorch_model.bin"
    torch.save(sd, path)
    model = load(path)
    _assert_identical(model, sd)
    emb = model.layer("embeddings.word_embeddings").kernel
    assert emb.role is Role.EMBEDDING


def test_hf_config_beside_state_dict_supplies_activations(tmp_path: Path) -> None:
    pytest.importorskip("initaudit.loaders.hf")
    sd = {"encoder.layer.0.intermediate.dense.weight": torch.randn(16, 8) * 0.02,
          "encoder.layer.0.intermediate.dense.bias": torch.zeros(16)}
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_act": "gelu"}))
    model = load(tmp_path / "pytorch_model.bin")
    assert _acts(model)["encoder.layer.0.intermediate.dense"] == (ActivationKind.GELU, None)


# --------------------------------------------------------------------------------------------
# dtypes, views, shared storage, byte order
# --------------------------------------------------------------------------------------------
def test_low_precision_dtypes(tmp_path: Path) -> None:
    torch.manual_seed(4)
    sd = {"a.weight": torch.randn(6, 5).to(torch.bfloat16), "b.weight": torch.randn(4, 3).half(),
          "c.weight": torch.randn(3, 3).to(torch.float8_e4m3fn), "d.weight": torch.randn(2, 2).double()}
    path = tmp_path / "lp.pt"
    torch.save(sd, path)
    model = load(path)
    dtypes = {t.name: t.dtype for t in model.tensors()}
    assert dtypes == {"a.weight": "bfloat16", "b.weight": "float16", "c.weight": "float8_e4m3fn",
                      "d.weight": "float64"}
    _assert_identical(model, sd)
    got = np.asarray(model.layer("a").kernel.load()).astype(np.float32)
    assert np.array_equal(got, sd["a.weight"].float().numpy())


def test_shared_storage_tied_weights(tmp_path: Path) -> None:
    emb = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    net = nn.ModuleDict({"emb": emb, "head": head})
    path = tmp_path / "tied.pt"
    torch.save(net.state_dict(), path)
    model = load(path)
    names = [t.name for t in model.tensors()]
    assert names == ["emb.weight", "head.weight"]
    head_t = next(t for t in model.tensors() if t.name == "head.weight")
    assert "shares storage with emb.weight" in head_t.notes
    _assert_identical(model, net.state_dict())


def test_non_contiguous_views(tmp_path: Path) -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd = {"t.weight": base.t(), "s.weight": base[1:, ::2], "e.weight": torch.ones(3).expand(5, 3)}
    path = tmp_path / "views.pt"
    torch.save(sd, path)
    model = load(path)
    _assert_identical(model, sd)


def test_big_endian_archive(tmp_path: Path) -> None:
    """torch writes little-endian only: make a big-endian archive by rewriting `byteorder`
    and byte-swapping each storage, which is exactly what a big-endian writer would produce."""
    torch.manual_seed(5)
    sd = {"l.weight": torch.randn(3, 4), "l.bias": torch.randn(3).half(), "m.weight": torch.randn(2, 2).double()}
    src = tmp_path / "le.pt"
    torch.save(sd, src)
    dst = tmp_path / "be.pt"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        order = {str(i): t.element_size() for i, t in enumerate(sd.values())}
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/byteorder"):
                data = b"big"
            elif "/data/" in info.filename:
                size = order[info.filename.rsplit("/", 1)[1]]
                data = np.frombuffer(data, f"<u{size}").astype(f">u{size}").tobytes()
            zout.writestr(info.filename, data)
    model = load(dst)
    got = {t.name: np.asarray(t.load()) for t in model.tensors()}
    for name, t in sd.items():
        assert np.array_equal(got[name], t.numpy()), name
    assert any("big-endian" in n for n in model.notes)


# --------------------------------------------------------------------------------------------
# whole nn.Module pickles
# --------------------------------------------------------------------------------------------
def test_whole_sequential_module_activations(tmp_path: Path) -> None:
    torch.manual_seed(6)
    seq = nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(),
        nn.Linear(8, 8), nn.LeakyReLU(0.2),
        nn.Linear(8, 8), nn.Dropout(0.1), nn.Sigmoid(),
        nn.Linear(8, 8), nn.Tanh(),
        nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU(),
        nn.Linear(8, 8), nn.SiLU(),
        nn.Linear(8, 8), nn.SELU(),
        nn.Linear(8, 8), nn.ELU(alpha=0.5),
        nn.Linear(8, 8), nn.Linear(8, 8), nn.Softmax(dim=-1),
        nn.Linear(8, 3))
    path = tmp_path / "seq.pt"
    torch.save(seq, path)
    model = load(path)
    assert not model.unsafe
    _assert_identical(model, seq.state_dict())
    K = ActivationKind
    acts = _acts(model)
    assert acts["0"] == (K.RELU, None)
    assert acts["2"] == (K.LEAKY_RELU, pytest.approx(0.2))
    assert acts["4"] == (K.SIGMOID, None)
    assert acts["7"] == (K.TANH, None)
    assert acts["9"] == (K.GELU, None) and model.layer("9").normalized
    assert acts["12"] == (K.SILU, None)
    assert acts["14"] == (K.SELU, None)
    assert acts["16"] == (K.ELU, 0.5)
    assert acts["18"] == (K.LINEAR, None)  # straight into the next Linear
    assert acts["19"] == (K.SOFTMAX, None)
    assert acts["21"] == (K.LINEAR, None)  # last layer of the top-level Sequential: graph output
    assert model.layer("10").tensors[0].role is Role.NORM_SCALE
    assert model.layer("0").activation.source == "sequential"


def test_whole_custom_module_with_nested_sequential(tmp_path: Path) -> None:
    torch.manual_seed(7)
    net = Net()
    path = tmp_path / "net.pt"
    torch.save(net, path)
    model = load(path)
    # fail closed (issue 11): torch.load would import the user's module to rebuild Net; the
    # tensors are still audited
    assert [u.what for u in model.unsafe] == [f"pickle GLOBAL {Net.__module__}.Net"]
    _assert_identical(model, net.state_dict())
    acts = _acts(model)
    assert acts["features.0"] == (ActivationKind.RELU, None) and model.layer("features.0").normalized
    assert acts["features.3"] == (ActivationKind.LEAKY_RELU, pytest.approx(0.2))
    assert acts["head"] is None  # outside any Sequential: functional code is invisible
    assert model.layer("features.1").op == "BatchNorm2d"
    assert any(n == "groups=4" for n in model.layer("features.3").kernel.notes)


def test_fans_for_transpose_conv_lstm_embedding_attention(tmp_path: Path) -> None:
    torch.manual_seed(8)
    mods = nn.ModuleDict({"up": nn.ConvTranspose2d(6, 4, 3, groups=2), "rnn": nn.LSTM(5, 7),
                          "emb": nn.Embedding(11, 5), "att": nn.MultiheadAttention(8, 2)})
    path = tmp_path / "mods.pt"
    torch.save(mods, path)
    model = load(path)
    _assert_identical(model, mods.state_dict())
    up = model.layer("up").kernel
    w = mods["up"].weight
    fi, fo = torch.nn.init._calculate_fan_in_and_fan_out(w)
    assert up.shape == (6, 2, 3, 3) and (up.fan_in, up.fan_out) == (fi, fo) and up.unit_axis == 1
    assert model.layer("up").op == "ConvTranspose2d"
    rnn = model.layer("rnn")
    assert rnn.op == "LSTM"
    ih = next(t for t in rnn.tensors if t.name == "rnn.weight_ih_l0")
    hh = next(t for t in rnn.tensors if t.name == "rnn.weight_hh_l0")
    assert ih.role is Role.KERNEL and hh.role is Role.RECURRENT and ih.gates == 4
    emb = model.layer("emb").kernel
    assert emb.role is Role.EMBEDDING and model.layer("emb").op == "Embedding"
    att = model.layer("att")
    assert any(t.name == "att.in_proj_weight" and t.role is Role.KERNEL for t in att.tensors)


# --------------------------------------------------------------------------------------------
# legacy format
# --------------------------------------------------------------------------------------------
def test_legacy_format_state_dict_and_module(tmp_path: Path) -> None:
    torch.manual_seed(9)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    sd_path, mod_path = tmp_path / "legacy_sd.pt", tmp_path / "legacy_mod.pt"
    torch.save(net.state_dict(), sd_path, _use_new_zipfile_serialization=False)
    torch.save(net, mod_path, _use_new_zipfile_serialization=False)
    for path in (sd_path, mod_path):
        assert detect_format(path) == "pytorch-legacy"
        model = load(path)
        assert model.format == "pytorch-legacy" and not model.unsafe
        _assert_identical(model, net.state_dict())
    assert _acts(load(mod_path)) == {"0": (ActivationKind.RELU, None), "2": (ActivationKind.LINEAR, None)}


def test_legacy_shared_and_views(tmp_path: Path) -> None:
    base = torch.randn(4, 6)
    sd = {"a.weight": base, "b.weight": base.t(), "c.weight": base[1:3]}
    path = tmp_path / "legacy_views.pt"
    torch.save(sd, path, _use_new_zipfile_serialization=False)
    _assert_identical(load(path), sd)


# --------------------------------------------------------------------------------------------
# TorchScript and .pt2
# --------------------------------------------------------------------------------------------
class Scripted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 8)
        self.body = nn.Sequential(nn.Linear(8, 8), nn.LeakyReLU(0.3), nn.Dropout(), nn.Linear(8, 8), nn.GELU())
        self.conv = nn.Conv1d(1, 2, 3)
        self.out = nn.Linear(12, 2)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.nn.functional.leaky_relu(self.fc2(h), 0.2)
        h = self.body(h)
        c = torch.tanh(self.conv(h.unsqueeze(1)))
        return self.out(c.flatten(1))


def test_torchscript_activations_and_tensors(tmp_path: Path) -> None:
    torch.manual_seed(10)
    net = Scripted()
    path = tmp_path / "ts.pt"
    torch.jit.script(net).save(str(path))
    assert detect_format(path) == "torchscript"
    model = load(path)
    assert not model.unsafe  # ordinary TorchScript code is the format, not a finding
    assert any("never executed" in n for n in model.notes)
    _assert_identical(model, net.state_dict())
    K = ActivationKind
    acts = _acts(model)
    assert acts["fc1"] == (K.RELU, None)
    assert acts["fc2"] == (K.LEAKY_RELU, pytest.approx(0.2))
    assert acts["body.0"] == (K.LEAKY_RELU, pytest.approx(0.3))
    assert acts["body.3"] == (K.GELU, None)
    assert acts["conv"] == (K.TANH, None)
    assert acts["out"] == (K.LINEAR, None)


def test_pt2_export(tmp_path: Path) -> None:
    torch.manual_seed(11)

    class M(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(4, 8)
            self.bn = nn.BatchNorm1d(8)
            self.fc2 = nn.Linear(8, 8)
            self.fc3 = nn.Linear(8, 3)

        def forward(self, x):
            h = torch.relu(self.bn(self.fc1(x)))
            h = torch.nn.functional.leaky_relu(self.fc2(h), 0.1)
            return torch.softmax(self.fc3(h), -1)

    net = M().eval()
    ep = torch.export.export(net, (torch.randn(2, 4),))
    path = tmp_path / "m.pt2"
    torch.export.save(ep, str(path))
    assert detect_format(path) == "pt2"
    model = load(path)
    assert model.has_graph and not model.unsafe
    _assert_identical(model, {k: v for k, v in net.state_dict().items() if v.dtype != torch.long})
    K = ActivationKind
    acts = _acts(model)
    assert acts["fc1"] == (K.RELU, None) and model.layer("fc1").normalized
    assert acts["fc2"] == (K.LEAKY_RELU, pytest.approx(0.1))
    assert acts["fc3"] == (K.SOFTMAX, None)


# --------------------------------------------------------------------------------------------
# the reader never imports torch
# --------------------------------------------------------------------------------------------
def test_reading_never_imports_torch(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
    files = [tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "c.pt", tmp_path / "d.pt", tmp_path / "e.pt2"]
    torch.save(net.state_dict(), files[0])
    torch.save(net, files[1])
    torch.save(net.state_dict(), files[2], _use_new_zipfile_serialization=False)
    torch.jit.script(net).save(str(files[3]))
    torch.export.save(torch.export.export(net, (torch.randn(1, 3),)), str(files[4]))
    script = (
        "import sys, json\n"
        "from initaudit.loaders import load\n"
        "out = []\n"
        f"for p in {json.dumps([str(f) for f in files])}:\n"
        "    m = load(p)\n"
        "    out.append(sum(float(abs(t.load()).sum()) for t in m.tensors()))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(json.dumps(out))\n")
    res = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                         timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    sums = json.loads(res.stdout)
    expected = float(sum(v.abs().sum() for v in net.state_dict().values()))
    assert all(abs(v - expected) < 1e-4 for v in sums), sums
