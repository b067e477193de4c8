"""Zoo false-positive patterns of torchvision, keras.applications, Flax and torch.nn, each built
with the real library (the full zoo is ``python benchmarks/zoo.py``; the fast slice of these
libraries is in tests/test_zoo_slice.py and here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from _tv import torch_or_skip  # tests/ is on the path (pytest rootdir-relative imports)

import initaudit
from initaudit.report import FileReport

pytestmark = pytest.mark.frameworks



def _audit(path: Path) -> FileReport:
    fr = initaudit.audit(path).files[0]
    assert fr.status.value != "error", fr.error
    return fr


def _alarms(fr: FileReport) -> list[tuple[str, str | None]]:
    return [(f.code, f.tensor or f.layer) for f in fr.findings
            if f.severity.value in ("error", "warning")]


def _zero_bias_conv_stack(torch: Any, std: float | None) -> Any:
    """A VGG-style plain conv stack (no BatchNorm) whose biases are zero on purpose, as
    torchvision's VGG init sets them (``nn.init.constant_(m.bias, 0)``)."""
    nn = torch.nn
    layers: list[Any] = []
    c = 3
    for w in (32, 32, 64, 64, 64, 64, 64, 64):
        layers += [nn.Conv2d(c, w, 3, padding=1), nn.ReLU()]
        c = w
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if std is None:  # torchvision.models.vgg.VGG.__init__
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, 0.0, std)
            nn.init.constant_(m.bias, 0)
    return model.eval()


@pytest.mark.parametrize("std", [None, 0.05])
def test_a_zero_conv_bias_alone_is_not_folded_batchnorm(std: float | None, tmp_path: Path) -> None:
    """A zero bias is a common deliberate init, not evidence of a BatchNorm folded at export:
    a plain stack drawn N(0, 0.05) (signal vanishes over 8 convs) must still warn, while the
    same stack with VGG's He init is clean."""
    torch = torch_or_skip()
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    model = _zero_bias_conv_stack(torch, std)
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx", dynamo=False)
    fr = _audit(tmp_path / "m.onnx")
    assert not any((s.get("note") or "").startswith("BatchNorm folded")
                   for s in fr.signal["layers"])
    codes = {code for code, _ in _alarms(fr)}
    assert codes == (set() if std is None else {"IA601"})


def test_folded_and_plain_zero_bias_convs_in_one_export(tmp_path: Path) -> None:
    """In one legacy export, the conv whose BatchNorm was folded (weight ``onnx::Conv_<n>``) is
    normalized; the zero-bias conv that had no BatchNorm keeps its name and is not."""
    torch = torch_or_skip()
    pytest.importorskip("onnx")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                          nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Conv2d(16, 8, 3)).eval()
    nn.init.zeros_(model[3].bias)
    torch.onnx.export(model, (torch.randn(1, 3, 16, 16),), tmp_path / "m.onnx", dynamo=False)
    fr = _audit(tmp_path / "m.onnx")
    folded = [s["layer"] for s in fr.signal["layers"]
              if (s.get("note") or "").startswith("BatchNorm folded")]
    assert len(folded) == 1
    assert folded[0] != "3"


def test_a_zeroed_hidden_kernel_named_like_layerscale_stays_an_error(tmp_path: Path) -> None:
    """The LayerScale/GRN convention covers per-channel vectors ((C,), (1, 1, 1, C)); a full
    hidden kernel that happens to be called ``ls`` or ``gamma`` is zeroed by mistake."""
    torch = torch_or_skip()
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(64, 64)
            self.ls = nn.Linear(64, 64)
            self.gamma = nn.Parameter(torch.full((64,), 1e-5))  # a real LayerScale
            self.head = nn.Linear(64, 10)

    torch.manual_seed(0)
    model = Net()
    with torch.no_grad():
        model.ls.weight.zero_()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fr = _audit(tmp_path / "m.pt")
    assert ("IA201", "ls.weight") in _alarms(fr)
    assert not [a for a in _alarms(fr) if a[1] == "gamma"]


# ---- a fast slice of benchmarks/zoo.py for these libraries, through the zoo's own builders,
# savers and defect injection (the full catalogue: python benchmarks/zoo.py --library ...) -------

ZOO_SLICE: list[tuple[str, str, tuple[str, ...]]] = [
    ("torch.nn", "mlp-tanh", ("state_dict", "onnx")),
    ("torch.nn", "cnn-bn-relu", ("state_dict", "torchscript", "onnx")),
    ("torch.nn", "gru", ("state_dict", "onnx")),
    ("flax", "linen-cnn", ("msgpack", "safetensors")),
    ("flax", "nnx-vit", ("msgpack",)),
    ("keras", "MobileNet", ("keras",)),
]
# keras.applications builders shrunk through their own arguments (same init code, a second to
# build): the full-size ones are in the zoo
_KERAS_SMALL: dict[str, dict[str, Any]] = {
    "MobileNet": {"alpha": 0.25, "input_shape": (32, 32, 3), "classes": 10},
}


def _zoo() -> Any:
    bench = str(Path(__file__).resolve().parent.parent / "benchmarks")
    if bench not in sys.path:
        sys.path.insert(0, bench)
    import zoo

    return zoo


@pytest.mark.parametrize("library,name,formats", ZOO_SLICE, ids=[f"{c[0]}/{c[1]}" for c in ZOO_SLICE])
def test_zoo_slice_untouched_is_clean_and_the_injected_defect_is_caught(
    library: str, name: str, formats: tuple[str, ...], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if library in ("torch.nn",):
        torch = torch_or_skip()
        torch.manual_seed(0)
        if "onnx" in formats:
            pytest.importorskip("onnx")
    elif library == "flax":
        pytest.importorskip("flax")
    else:
        pytest.importorskip("keras")
    zoo = _zoo()
    monkeypatch.setenv("ZOO_MODEL", name)
    monkeypatch.setenv("ZOO_SEED", "0")
    if library == "keras":
        import keras

        keras.utils.set_random_seed(0)
        model, example = getattr(keras.applications, name)(weights=None, **_KERAS_SMALL[name]), None
    else:
        model, example = zoo.BUILDERS[library](name)
    saved = zoo.save_formats(library, model, example, tmp_path, set(formats))
    assert not [f for f in saved if f.endswith("!")], saved
    for fmt, path in saved.items():
        fr = _audit(path)
        assert _alarms(fr) == [], (fmt, _alarms(fr))
    primary = next(iter(saved.values()))
    injected = zoo.inject_and_audit(library, primary, tmp_path, 0, model, example)
    assert injected.get("caught"), injected


@pytest.mark.parametrize("cell", ["GRU", "LSTM", "RNN"])
def test_exported_recurrent_input_kernel_is_torchs_rnn_default(cell: str, tmp_path: Path) -> None:
    """ONNX keeps torch's recurrent weights as (directions, G·H, in): the input kernel of a
    32 -> 64 cell is U(±1/sqrt(hidden=64)), torch's RNN default, not an unknown scheme (a GRU
    stack exported with torch defaults got a signal-propagation warning instead of the
    library-default info)."""
    torch = torch_or_skip()
    pytest.importorskip("onnx")
    nn = torch.nn

    class Seq(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = getattr(nn, cell)(32, 64, num_layers=2, batch_first=True)
            self.head = nn.Linear(64, 5)

        def forward(self, x: Any) -> Any:
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    torch.onnx.export(Seq(), (torch.randn(1, 7, 32),), tmp_path / "m.onnx", dynamo=False)
    fr = _audit(tmp_path / "m.onnx")
    assert _alarms(fr) == []
    first = next(t for t in fr.tensors if len(t.shape) == 3 and t.shape[2] == 32)
    assert first.scheme is not None and first.scheme.rule == "torch_default"


@pytest.mark.parametrize("api", ["linen", "nnx"])
def test_duplicated_units_of_a_flax_attention_kernel_are_found(api: str, tmp_path: Path) -> None:
    """A DenseGeneral query kernel (in, heads, head_dim) has one output unit per (head, dim):
    duplicating units must be reported there like in any Dense (the zoo's injected duplicate on
    a linen ViT went unseen), and the untouched kernel stays clean."""
    jax = pytest.importorskip("jax")
    np = pytest.importorskip("numpy")
    serialization = pytest.importorskip("flax.serialization")
    if api == "linen":
        import flax.linen as fnn

        class M(fnn.Module):
            @fnn.compact
            def __call__(self, x: Any) -> Any:
                return fnn.Dense(10)(fnn.MultiHeadDotProductAttention(num_heads=4)(x, x))

        tree = jax.tree_util.tree_map(
            np.asarray, M().init(jax.random.PRNGKey(0), jax.numpy.ones((1, 5, 64))))
        query = tree["params"]["MultiHeadDotProductAttention_0"]["query"]
    else:
        from flax import nnx

        class N(nnx.Module):
            def __init__(self, rngs: Any) -> None:
                self.attn = nnx.MultiHeadAttention(num_heads=4, in_features=64, decode=False,
                                                   rngs=rngs)
                self.head = nnx.Linear(64, 10, rngs=rngs)

        tree = jax.tree_util.tree_map(np.asarray, nnx.to_pure_dict(nnx.state(N(nnx.Rngs(0)))))
        query = tree["attn"]["query"]
    (tmp_path / "clean.msgpack").write_bytes(serialization.to_bytes(tree))
    assert _alarms(_audit(tmp_path / "clean.msgpack")) == []
    kernel = np.array(query["kernel"])
    assert kernel.shape == (64, 4, 16)
    kernel[:, 2, 1] = kernel[:, 2, 0]  # head 2: dims 0 and 1 are the same unit
    query["kernel"] = kernel
    (tmp_path / "dup.msgpack").write_bytes(serialization.to_bytes(tree))
    codes = {code for code, name in _alarms(_audit(tmp_path / "dup.msgpack"))
             if name and "query" in name}
    assert codes == {"IA202"}
