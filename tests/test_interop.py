"""Interop: one model, built with the real framework's own initializers, saved in every format the
framework writes; initaudit reads each file in a process where the framework is never imported
and must find bit-identical tensors, the same fans and activations, and the same verdicts as on
the ONNX export of the same model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.frameworks

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: audits each file and dumps what initaudit saw, then proves that no
# framework was imported along the way.
READER = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    from initaudit.engine import AuditConfig, analyse
    from initaudit.loaders import LoadOptions, load
    from initaudit.activations import ActivationHint
    out = {}
    for path, hints in json.loads(sys.argv[1]):
        opts = LoadOptions(hints=tuple(ActivationHint.parse(h) for h in hints))
        model = load(path, opts)
        tensors = {}
        for t in model.tensors():
            v = np.ascontiguousarray(np.asarray(t.load(), dtype=np.float64))
            tensors[t.name] = {"sha": hashlib.sha256(v.tobytes()).hexdigest(), "shape": list(v.shape),
                               "fan_in": t.fan_in, "fan_out": t.fan_out, "role": t.role.value}
        acts = {l.name: (l.activation.kind.value if l.activation else None) for l in model.layers}
        report = analyse(model, AuditConfig(hints=opts.hints))
        schemes = {t.name: [t.scheme.rule, t.scheme.distribution] for t in report.tensors if t.scheme}
        findings = sorted([f.severity.value, f.code, f.tensor or f.layer] for f in report.findings)
        out[path] = {"format": model.format, "tensors": tensors, "activations": acts,
                     "schemes": schemes, "findings": findings, "unsafe": [u.what for u in model.unsafe]}
    leaked = [m for m in ("torch", "keras", "jax", "flax", "orbax", "tensorflow", "tf_keras",
                          "safetensors", "gguf", "msgpack") if m in sys.modules]
    print(json.dumps({"files": out, "leaked": leaked}))
""")


def read_without_frameworks(files: list[tuple[Path, list[str]]]) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    arg = json.dumps([[str(p), hints] for p, hints in files])
    proc = subprocess.run([sys.executable, "-c", READER, arg], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["leaked"] == [], f"reading imported {result['leaked']}"
    return result["files"]


def sha(array: np.ndarray) -> str:
    import hashlib

    v = np.ascontiguousarray(np.asarray(array, dtype=np.float64))
    return hashlib.sha256(v.tobytes()).hexdigest()


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 128), nn.ReLU(),       # He normal before ReLU: right
        nn.Linear(128, 96), nn.Sigmoid(),    # He normal before sigmoid: IA101
        nn.Linear(96, 48), nn.Tanh(),        # Glorot uniform before tanh: right
        nn.Linear(48, 10),                   # torch default, linear output
    )
    nn.init.kaiming_normal_(model[0].weight, nonlinearity="relu")
    nn.init.kaiming_normal_(model[2].weight, nonlinearity="relu")
    nn.init.xavier_uniform_(model[4].weight)
    model.eval()
    folder = tmp_path_factory.mktemp("torch")
    files = {}
    files["state_dict"] = folder / "state_dict.pt"
    torch.save(model.state_dict(), files["state_dict"])
    files["whole"] = folder / "whole.pt"
    torch.save(model, files["whole"])
    files["legacy"] = folder / "legacy.pt"
    torch.save(model.state_dict(), files["legacy"], _use_new_zipfile_serialization=False)
    files["lightning"] = folder / "lightning.ckpt"
    torch.save({"state_dict": model.state_dict(), "epoch": 3,
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.1}]}]}, files["lightning"])
    files["torchscript"] = folder / "scripted.pt"
    torch.jit.script(model).save(str(files["torchscript"]))
    example = torch.randn(2, 64)
    files["pt2"] = folder / "exported.pt2"
    torch.export.save(torch.export.export(model, (example,)), str(files["pt2"]))
    files["onnx"] = folder / "exported.onnx"
    torch.onnx.export(model, (example,), str(files["onnx"]), dynamo=False,
                      input_names=["x"], output_names=["y"])
    st = pytest.importorskip("safetensors.torch")
    files["safetensors"] = folder / "model.safetensors"
    st.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(files["safetensors"]))
    npz = folder / "model.npz"
    np.savez(npz, **{k: v.numpy() for k, v in model.state_dict().items()})
    files["npz"] = npz
    gguf = pytest.importorskip("gguf")
    files["gguf"] = folder / "model.gguf"  # how llama.cpp's converters write (GGUFWriter)
    writer = gguf.GGUFWriter(str(files["gguf"]), "mlp")
    for k, v in model.state_dict().items():
        writer.add_tensor(k, v.numpy(), raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    truth = {k: sha(v.numpy()) for k, v in model.state_dict().items()}
    return files, truth


HINTS = ["0=relu", "2=sigmoid", "4=tanh", "6=linear"]
GRAPH_FORMATS = ("whole", "torchscript", "pt2", "onnx")
FLAT_FORMATS = ("state_dict", "legacy", "lightning", "safetensors", "npz", "gguf")


def test_torch_formats_match_the_onnx_export(torch_files):
    files, truth = torch_files
    inputs = [(files[k], []) for k in GRAPH_FORMATS] + [(files[k], HINTS) for k in FLAT_FORMATS]
    seen = read_without_frameworks(inputs)
    onnx = seen[str(files["onnx"])]
    assert onnx["findings"] == [["error", "IA101", "2.weight"]]
    for key in GRAPH_FORMATS + FLAT_FORMATS:
        got = seen[str(files[key])]
        by_name = got["tensors"]
        # bit-identical values for every parameter, whatever the format
        for name, digest in truth.items():
            matches = [t for n, t in by_name.items() if n == name or n.endswith(name.replace(".", "_"))
                       or n.replace("_", ".").endswith(name)]
            assert matches, f"{key}: {name} missing (has {sorted(by_name)})"
            assert matches[0]["sha"] == digest, f"{key}: {name} differs"
        # fans of the kernels, in torch's convention
        kernels = {n: (t["fan_in"], t["fan_out"]) for n, t in by_name.items() if t["role"] == "kernel"}
        assert sorted(kernels.values()) == sorted([(64, 128), (128, 96), (96, 48), (48, 10)]), key
        # identical verdicts: the same schemes and the same findings as on the ONNX export
        assert sorted(map(tuple, got["schemes"].values())) == sorted(map(tuple, onnx["schemes"].values())), key
        if key == "gguf":  # trained by construction: the same finding, as info on learnt weights
            assert got["findings"] == [["info", "IA101", "2.weight"]], got["findings"]
        else:
            assert [f[:2] for f in got["findings"]] == [["error", "IA101"]], (key, got["findings"])
        assert got["unsafe"] == [], key


def test_graph_formats_find_the_activations_themselves(torch_files):
    files, _ = torch_files
    seen = read_without_frameworks([(files[k], []) for k in GRAPH_FORMATS])
    for key in GRAPH_FORMATS:
        acts = sorted(a for a in seen[str(files[key])]["activations"].values() if a)
        assert acts == ["linear", "relu", "sigmoid", "tanh"], (key, seen[str(files[key])]["activations"])


def test_bare_state_dict_without_hints_says_unknown(torch_files):
    files, _ = torch_files
    seen = read_without_frameworks([(files["state_dict"], [])])
    got = seen[str(files["state_dict"])]
    assert set(got["activations"].values()) == {None}
    assert got["findings"] == []  # pairing rules skipped (and said so in the notes), not "clean"


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    os.environ.setdefault("KERAS_BACKEND", "jax")
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((64,))
    x = keras.layers.Dense(128, activation="relu", kernel_initializer="he_normal", name="fc1")(inputs)
    x = keras.layers.Dense(96, kernel_initializer="he_uniform", name="fc2")(x)
    x = keras.layers.Activation("sigmoid")(x)
    x = keras.layers.Dense(48, activation="tanh", name="fc3")(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    model = keras.Model(inputs, outputs)
    folder = tmp_path_factory.mktemp("keras")
    files = {"keras": folder / "model.keras", "h5": folder / "model.h5",
             "weights": folder / "model.weights.h5"}
    model.save(files["keras"])
    model.save(files["h5"])
    model.save_weights(files["weights"])
    # Keras' npz weights store inside .keras (pickled Variables; keras.src saving_lib only)
    saving_lib = pytest.importorskip("keras.src.saving.saving_lib")
    files["npz"] = folder / "npz.keras"
    saving_lib.save_model(model, str(files["npz"]), weights_format="npz")
    sharded = folder / "sharded"
    sharded.mkdir()
    files["sharded"] = sharded / "model.weights.json"
    model.save_weights(files["sharded"], max_shard_size=0.00005)  # GB: ~50 kB shards
    assert len(list(sharded.glob("*.weights.h5"))) >= 2
    truth = {f"{layer.name}/{w.name}": sha(np.asarray(w)) for layer in model.layers for w in layer.weights}
    return files, truth


def test_keras_formats_bit_identical_with_activations(keras_files):
    files, truth = keras_files
    hints = ["fc1=relu", "fc2=sigmoid", "fc3=tanh", "head=linear"]
    seen = read_without_frameworks([(files["keras"], []), (files["h5"], []), (files["weights"], hints),
                                    (files["sharded"], hints), (files["npz"], [])])
    for key, path in files.items():
        got = seen[str(path)]
        digests = {t["sha"] for t in got["tensors"].values()}
        assert set(truth.values()) <= digests, key
        kernels = sorted((t["fan_in"], t["fan_out"]) for t in got["tensors"].values() if t["role"] == "kernel")
        assert kernels == sorted([(64, 128), (128, 96), (96, 48), (48, 10)]), key
        assert [f[:2] for f in got["findings"]] == [["error", "IA101"]], (key, got["findings"])
        if key not in ("weights", "sharded"):
            assert sorted(a for a in got["activations"].values() if a) == ["linear", "relu", "sigmoid", "tanh"], key


# The same MLP as the torch one, built with Flax's own initializers: He normal before ReLU, He
# normal before sigmoid (IA101), Glorot uniform before tanh, the framework default on the head.
FLAX_HINTS = ["fc1=relu", "fc2=sigmoid", "fc3=tanh", "head=linear"]


@pytest.fixture(scope="module")
def flax_files(tmp_path_factory):
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    nn = pytest.importorskip("flax.linen")
    nnx = pytest.importorskip("flax.nnx")
    serialization = pytest.importorskip("flax.serialization")
    traverse = pytest.importorskip("flax.traverse_util")
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    he, glorot = nn.initializers.he_normal(), nn.initializers.glorot_uniform()

    class Mlp(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(128, kernel_init=he, name="fc1")(x))
            x = nn.sigmoid(nn.Dense(96, kernel_init=he, name="fc2")(x))
            x = nn.tanh(nn.Dense(48, kernel_init=glorot, name="fc3")(x))
            return nn.Dense(10, name="head")(x)

    class NnxMlp(nnx.Module):
        def __init__(self, rngs):
            self.fc1 = nnx.Linear(64, 128, kernel_init=nnx.initializers.he_normal(), rngs=rngs)
            self.fc2 = nnx.Linear(128, 96, kernel_init=nnx.initializers.he_normal(), rngs=rngs)
            self.fc3 = nnx.Linear(96, 48, kernel_init=nnx.initializers.glorot_uniform(), rngs=rngs)
            self.head = nnx.Linear(48, 10, rngs=rngs)

    folder = tmp_path_factory.mktemp("flax")
    variables = Mlp().init(jax.random.key(0), jnp.zeros((1, 64)))
    linen_params = {k: np.asarray(v) for k, v in traverse.flatten_dict(variables["params"], sep=".").items()}
    nnx_model = NnxMlp(nnx.Rngs(0))
    nnx_state = nnx.to_pure_dict(nnx.state(nnx_model))
    nnx_params = {k: np.asarray(v) for k, v in traverse.flatten_dict(nnx_state, sep=".").items()}
    files = {"linen-msgpack": folder / "linen.msgpack", "linen-safetensors": folder / "linen.safetensors",
             "nnx-msgpack": folder / "nnx.msgpack"}
    files["linen-msgpack"].write_bytes(serialization.to_bytes(variables))
    # what transformers' Flax save_pretrained(safe_serialization=True) writes
    safetensors_numpy.save_file(linen_params, str(files["linen-safetensors"]), metadata={"format": "flax"})
    files["nnx-msgpack"].write_bytes(serialization.to_bytes(nnx_state))
    truth = {"linen-msgpack": linen_params, "linen-safetensors": linen_params, "nnx-msgpack": nnx_params}
    try:
        ocp = __import__("orbax.checkpoint", fromlist=["StandardCheckpointer"])
        __import__("tensorstore")
    except ImportError:
        ocp = None
    if ocp is not None:  # orbax's default layout (OCDBT + zarr), one step folder each
        for key, tree in (("linen-orbax", variables), ("nnx-orbax", nnx.split(nnx_model)[1])):
            files[key] = folder / key / "1"
            ckptr = ocp.StandardCheckpointer()
            ckptr.save(files[key], tree)
            ckptr.wait_until_finished()
        truth["linen-orbax"], truth["nnx-orbax"] = linen_params, nnx_params
    return files, {key: {n: sha(v) for n, v in params.items()} for key, params in truth.items()}


def test_flax_linen_and_nnx_match_the_torch_verdicts(flax_files, torch_files):
    files, truth = flax_files
    seen = read_without_frameworks([(p, FLAX_HINTS) for p in files.values()]
                                   + [(torch_files[0]["onnx"], [])])
    onnx = seen[str(torch_files[0]["onnx"])]
    for key, path in files.items():
        got = seen[str(path)]
        digests = {t["sha"] for t in got["tensors"].values()}
        # bit-identical: every parameter Flax holds, found by value
        assert set(truth[key].values()) <= digests, key
        kernels = {n: t for n, t in got["tensors"].items() if t["role"] == "kernel"}
        # Flax layout (in, out): fans as Flax's own initializers compute them
        assert sorted((t["fan_in"], t["fan_out"]) for t in kernels.values()) == sorted(
            [(64, 128), (128, 96), (96, 48), (48, 10)]), key
        assert all(t["shape"][0] == t["fan_in"] for t in kernels.values()), key
        acts = {name.rsplit(".", 1)[-1]: a for name, a in got["activations"].items() if a}
        assert acts == {"fc1": "relu", "fc2": "sigmoid", "fc3": "tanh", "head": "linear"}, (key, acts)
        # the same verdict as the torch model's ONNX export: IA101 on the second layer only
        assert [f[:2] for f in got["findings"]] == [["error", "IA101"]], (key, got["findings"])
        assert ".fc2." in "." + got["findings"][0][2] + ".", (key, got["findings"])
        # the same schemes as the torch model where both use the same one (He, He, Glorot
        # uniform); Flax's He normal is truncated (jax variance_scaling), torch's is not
        schemes = {name.replace(".value", "").split(".")[-2]: tuple(s)
                   for name, s in got["schemes"].items() if "kernel" in name}
        torch_schemes = {layer: tuple(onnx["schemes"][f"{i}.weight"])
                         for layer, i in (("fc1", 0), ("fc2", 2), ("fc3", 4), ("head", 6))}
        assert [schemes[n][0] for n in ("fc1", "fc2", "fc3")] == [
            torch_schemes[n][0] for n in ("fc1", "fc2", "fc3")] == ["he", "he", "glorot"], key
        assert schemes["fc1"][1] == "truncated_normal" and schemes["fc3"] == torch_schemes["fc3"]
        # each framework's own default on the head: torch_default vs Flax's lecun_normal
        assert schemes["head"] == ("lecun", "truncated_normal"), (key, schemes)
        assert torch_schemes["head"][0] == "torch_default"
        assert got["unsafe"] == [], key
