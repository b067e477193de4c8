"""Calibration benchmark: how often initaudit names the right rule+family, and how often it
raises an error or warning on a correctly initialized tensor (false alarm).

Ground truth comes from the frameworks' own initializers when they are installed (torch.nn.init
and module defaults, keras.initializers on the JAX backend, jax.nn.initializers) and from the
exact formulas in numpy otherwise. Layer types: Linear/Dense, Conv1-3D (with groups and
depthwise), ConvTranspose, RNN/LSTM input and recurrent kernels, embeddings; sizes from 64 to
~10^7 elements; several seeds.

    python benchmarks/calibration.py            # default grid (a few minutes on 2 cores)
    python benchmarks/calibration.py --quick    # smaller grid
    python benchmarks/calibration.py --json out.json
    python benchmarks/calibration.py --quick --seeds 1 --sources numpy --json \
        tests/data/calibration_numpy_quick.json   # the snapshot tests/test_calibration.py pins

A prediction counts as right when the identified (rule, family) is the truth, or when the truth
is among the alternatives the report calls equally consistent *and* the confidence is <= 0.75
(an honest "ambiguous", e.g. Glorot vs LeCun on a square layer).
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from initaudit.analysis.fans import keras_fans, torch_fans  # noqa: E402
from initaudit.analysis.schemes import TN2_STD_FACTOR  # noqa: E402
from initaudit.engine import AuditConfig, analyse  # noqa: E402
from initaudit.model import (  # noqa: E402
    Activation,
    ActivationKind,
    Convention,
    Layer,
    LoadedModel,
    Role,
    WeightTensor,
)

BANDS = [(0, 1023, "64-1,023"), (1024, 4095, "1,024-4,095"), (4096, 10**12, ">=4,096")]

# the activation each scheme is meant for: a correctly initialized tensor is audited with it
SUITS = {"he": ActivationKind.RELU, "glorot": ActivationKind.TANH, "lecun": ActivationKind.SELU,
         "torch_default": ActivationKind.LINEAR, "fixed": ActivationKind.GELU,
         "orthogonal": ActivationKind.TANH}


@dataclass
class Case:
    source: str  # numpy / torch / keras / jax
    layer: str  # Linear, Conv2d, ...
    rule: str
    family: str
    shape: tuple[int, ...]
    convention: Convention
    values: np.ndarray
    role: Role = Role.KERNEL
    op: str = "Linear"
    gates: int = 1
    name: str = "w"


def truncated(rng: np.random.Generator, sigma: float, shape) -> np.ndarray:
    n = int(np.prod(shape))
    out: list[np.ndarray] = []
    have = 0
    while have < n:
        d = rng.standard_normal(max(2 * (n - have), 16))
        d = d[np.abs(d) <= 2]
        out.append(d)
        have += d.size
    return (np.concatenate(out)[:n] * sigma).reshape(shape)


def numpy_cases(shape, convention, layer, seed) -> list[Case]:
    fi, fo = (torch_fans if convention is Convention.TORCH else keras_fans)(shape)
    rng = np.random.default_rng(seed)
    std = {"he": math.sqrt(2 / fi), "glorot": math.sqrt(2 / (fi + fo)),
           "lecun": math.sqrt(1 / fi), "torch_default": math.sqrt(1 / (3 * fi)), "fixed": 0.02}
    out = []
    for rule, s in std.items():
        fams = ["uniform"] if rule == "torch_default" else ["normal", "uniform", "truncated_normal"]
        if rule == "fixed":
            fams = ["normal"]
        for fam in fams:
            if fam == "normal":
                v = rng.normal(0, s, shape)
            elif fam == "uniform":
                v = rng.uniform(-math.sqrt(3) * s, math.sqrt(3) * s, shape)
            else:
                v = truncated(rng, s / TN2_STD_FACTOR, shape)
            out.append(Case("numpy", layer, rule, fam, tuple(shape), convention,
                            v.astype(np.float32)))
    return out


def torch_cases(shape, layer, seed) -> list[Case]:
    import torch

    torch.manual_seed(seed)
    inits: list[tuple[str, str, Callable]] = [
        ("he", "normal", lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu")),
        ("he", "uniform", lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu")),
        ("glorot", "uniform", torch.nn.init.xavier_uniform_),
        ("glorot", "normal", torch.nn.init.xavier_normal_),
        ("lecun", "normal", lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="linear")),
        ("torch_default", "uniform", lambda w: torch.nn.init.kaiming_uniform_(w, a=math.sqrt(5))),
        ("fixed", "normal", lambda w: torch.nn.init.normal_(w, 0.0, 0.02)),
        ("fixed", "normal", lambda w: torch.nn.init.trunc_normal_(w, std=0.02)),
    ]
    out = []
    for rule, fam, init in inits:
        w = torch.empty(shape)
        init(w)
        out.append(Case("torch", layer, rule, fam, tuple(shape), Convention.TORCH, w.numpy().copy()))
    if len(shape) >= 2 and shape[0] >= 2:
        w = torch.empty(shape)
        torch.nn.init.orthogonal_(w)
        out.append(Case("torch", layer, "orthogonal", "orthogonal", tuple(shape), Convention.TORCH,
                        w.numpy().copy()))
    return out


def torch_module_defaults(seed, quick: bool = False) -> list[Case]:
    """Untouched modules: what a freshly built torch model contains."""
    import torch

    torch.manual_seed(seed)
    out = []
    nn = torch.nn
    modules = [(nn.Linear(512, 256), "Linear"), (nn.Linear(20, 8), "Linear"),
               (nn.Conv2d(32, 64, 3), "Conv2d"), (nn.Conv2d(3, 16, 3), "Conv2d"),
               (nn.Conv2d(64, 64, 3, groups=64), "Conv2d-depthwise"),
               (nn.Conv2d(64, 128, 3, groups=8), "Conv2d-groups"),
               (nn.Conv1d(16, 32, 5), "Conv1d"), (nn.Conv3d(8, 16, 3), "Conv3d"),
               (nn.ConvTranspose2d(32, 16, 4), "ConvTranspose2d"),
               (nn.ConvTranspose1d(64, 32, 5), "ConvTranspose1d"),
               (nn.ConvTranspose3d(8, 8, 3), "ConvTranspose3d")]
    if not quick:
        modules += [(nn.Linear(4096, 2048), "Linear"), (nn.Conv2d(512, 512, 3), "Conv2d")]
    for mod, name in modules:
        w = mod.weight.detach().numpy().copy()
        out.append(Case("torch-module", name, "torch_default", "uniform", w.shape, Convention.TORCH, w,
                        op=name))
    rnns = [(nn.LSTM(64, 128), "LSTM", 4), (nn.GRU(32, 96), "GRU", 3), (nn.RNN(48, 64), "RNN", 1)]
    if not quick:
        rnns.append((nn.LSTM(512, 1024), "LSTM", 4))
    for rnn, name, _gates in rnns:
        for pname, role in [("weight_ih_l0", Role.KERNEL), ("weight_hh_l0", Role.RECURRENT)]:
            w = getattr(rnn, pname).detach().numpy().copy()
            # a bare state_dict names them weight_ih_l0 / weight_hh_l0 with no common prefix
            out.append(Case("torch-module", name, "torch_default", "uniform", w.shape,
                            Convention.TORCH, w, role=role, op="RNN", gates=1, name=pname))
    for n, d in ([(1000, 64)] + ([] if quick else [(50000, 128)])):
        emb = nn.Embedding(n, d).weight.detach().numpy().copy()
        out.append(Case("torch-module", "Embedding", "fixed", "normal", emb.shape, Convention.TORCH,
                        emb, role=Role.EMBEDDING, op="Embedding"))
    return out


def keras_module_defaults(seed) -> list[Case]:
    """Keras layers as built: Dense/Conv glorot_uniform, Embedding U(±0.05), LSTM recurrent
    orthogonal (checked in Keras' own layout and fans)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    keras.utils.set_random_seed(seed)
    out = []
    dense = keras.layers.Dense(128)
    dense.build((None, 300))
    conv = keras.layers.Conv2D(32, 3)
    conv.build((None, 16, 16, 16))
    for layer, name in [(dense, "Dense"), (conv, "Conv2D")]:
        w = np.asarray(layer.kernel)
        out.append(Case("keras-layer", name, "glorot", "uniform", w.shape, Convention.KERAS, w,
                        op=name))
    emb = keras.layers.Embedding(2000, 64)
    emb.build((None, 10))
    w = np.asarray(emb.embeddings)
    out.append(Case("keras-layer", "Embedding", "fixed", "uniform", w.shape, Convention.KERAS, w,
                    role=Role.EMBEDDING, op="Embedding"))
    lstm = keras.layers.LSTM(64)
    lstm.build((None, 10, 32))
    cell = lstm.cell
    w = np.asarray(cell.kernel)
    out.append(Case("keras-layer", "LSTM", "glorot", "uniform", w.shape, Convention.KERAS, w,
                    op="LSTM"))
    w = np.asarray(cell.recurrent_kernel)
    out.append(Case("keras-layer", "LSTM", "orthogonal", "orthogonal", w.shape, Convention.KERAS,
                    w, role=Role.RECURRENT, op="LSTM"))
    return out


def keras_cases(shape, layer, seed) -> list[Case]:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    inits = [("he", "truncated_normal", keras.initializers.HeNormal(seed=seed)),
             ("he", "uniform", keras.initializers.HeUniform(seed=seed)),
             ("glorot", "uniform", keras.initializers.GlorotUniform(seed=seed)),
             ("glorot", "truncated_normal", keras.initializers.GlorotNormal(seed=seed)),
             ("lecun", "truncated_normal", keras.initializers.LecunNormal(seed=seed)),
             ("lecun", "uniform", keras.initializers.LecunUniform(seed=seed))]
    out = []
    for rule, fam, init in inits:
        v = np.asarray(init(shape, dtype="float32"))
        out.append(Case("keras", layer, rule, fam, tuple(shape), Convention.KERAS, v))
    if len(shape) >= 2:
        v = np.asarray(keras.initializers.Orthogonal(seed=seed)(shape, dtype="float32"))
        out.append(Case("keras", layer, "orthogonal", "orthogonal", tuple(shape), Convention.KERAS, v))
    return out


def jax_cases(shape, layer, seed) -> list[Case]:
    import jax

    key = jax.random.PRNGKey(seed)
    inits = [("he", "truncated_normal", jax.nn.initializers.he_normal()),
             ("he", "uniform", jax.nn.initializers.he_uniform()),
             ("glorot", "uniform", jax.nn.initializers.glorot_uniform()),
             ("glorot", "truncated_normal", jax.nn.initializers.glorot_normal()),
             ("lecun", "truncated_normal", jax.nn.initializers.lecun_normal())]
    return [Case("jax", layer, r, f, tuple(shape), Convention.JAX,
                 np.asarray(init(key, shape, "float32"))) for r, f, init in inits]


def have(module: str) -> bool:
    try:
        if module == "keras":
            os.environ.setdefault("KERAS_BACKEND", "jax")
        __import__(module)
        return True
    except Exception:
        return False


def grid(quick: bool) -> list[tuple[tuple[int, ...], str]]:
    """(torch-layout shape, layer kind), sizes from 64 to ~10^7 elements."""
    shapes = [((8, 8), "Linear"), ((16, 16), "Linear"), ((32, 12), "Linear"), ((24, 48), "Linear"),
              ((48, 40), "Linear"), ((64, 64), "Linear"), ((40, 100), "Linear"),
              ((128, 64), "Linear"), ((256, 256), "Linear"), ((300, 784), "Linear"),
              ((1024, 1024), "Linear"), ((16, 3, 3, 3), "Conv2d"), ((32, 16, 3, 3), "Conv2d"),
              ((64, 1, 3, 3), "Conv2d-depthwise"), ((64, 32, 5), "Conv1d"),
              ((16, 8, 3, 3, 3), "Conv3d"), ((128, 64, 3, 3), "Conv2d"), ((512, 256, 3, 3), "Conv2d"),
              ((32, 16, 4, 4), "ConvTranspose2d"), ((64, 8, 3, 3), "Conv2d-groups"),
              ((512, 128), "LSTM-ih"), ((384, 128), "GRU-hh"), ((1000, 64), "Embedding-shaped")]
    if not quick:
        shapes += [((4096, 2048), "Linear"), ((3072, 3072), "Linear")]
    return shapes


def audit_case(case: Case) -> tuple[str, str, float, list[str], list]:
    shape = case.shape
    fi, fo = (torch_fans if case.convention is Convention.TORCH else keras_fans)(shape)
    t = WeightTensor(name=case.name, layer="layer", op=case.op, role=case.role, shape=shape,
                     dtype="float32", load=lambda v=case.values: v, fan_in=fi, fan_out=fo,
                     convention=case.convention,
                     unit_axis=0 if case.convention is Convention.TORCH else len(shape) - 1,
                     gates=case.gates)
    act = None if case.role is Role.EMBEDDING else Activation(SUITS[case.rule], None, "benchmark")
    layer = Layer(name="layer", op=case.op, tensors=[t], activation=act)
    model = LoadedModel(path="<calibration>", format="in-memory", layers=[layer], has_graph=False)
    report = analyse(model, AuditConfig())
    scheme = report.tensors[0].scheme
    consistent = [(scheme.rule, scheme.distribution)] + [(c.rule, c.distribution) for c in scheme.alternatives]
    alarms = [f for f in report.findings if f.severity.value in ("error", "warning")]
    return scheme.rule, scheme.distribution, scheme.confidence, consistent, alarms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", help="write the raw results here")
    ap.add_argument("--sources", default="numpy,torch,keras,jax",
                    help="comma-separated subset of numpy,torch,keras,jax (those installed)")
    args = ap.parse_args(argv)

    wanted = {s.strip() for s in args.sources.split(",")}
    sources = {"numpy": "numpy" in wanted}
    sources.update({m: m in wanted and have(m) for m in ("torch", "keras", "jax")})
    t0 = time.time()
    cases: list[Case] = []
    for seed in range(args.seeds):
        for shape, layer in grid(args.quick):
            if sources["numpy"]:
                cases += numpy_cases(shape, Convention.TORCH, layer, seed)
            if sources["torch"]:
                cases += torch_cases(shape, layer, seed)
            kshape = tuple(shape[2:]) + (shape[1], shape[0]) if len(shape) > 2 else (shape[1], shape[0])
            if sources["keras"]:
                cases += keras_cases(kshape, layer, seed)
            if sources["jax"]:
                cases += jax_cases(kshape, layer, seed)
        if sources["torch"]:
            cases += torch_module_defaults(seed, args.quick)
        if sources["keras"]:
            cases += keras_module_defaults(seed)
    if not args.quick:  # ~10^7-element tensors: every numpy family, torch's initializers
        if sources["numpy"]:
            cases += numpy_cases((2500, 4000), Convention.TORCH, "Linear", 99)
        if sources["torch"]:
            cases += torch_cases((2500, 4000), "Linear", 99)

    confusion: dict[str, collections.Counter] = {b[2]: collections.Counter() for b in BANDS}
    right = collections.Counter()
    total = collections.Counter()
    confident_wrong = collections.Counter()
    alarms = 0
    alarm_examples = []
    rows = []
    for case in cases:
        rule, fam, conf, consistent, found = audit_case(case)
        band = next(b[2] for b in BANDS if b[0] <= case.values.size <= b[1])
        truth = (case.rule, case.family)
        ok = (rule, fam) == truth or (truth in consistent and conf <= 0.75)
        total[band] += 1
        right[band] += ok
        if not ok and conf >= 0.9:
            confident_wrong[band] += 1
        confusion[band][(f"{case.rule}/{case.family}", f"{rule}/{fam}")] += 1
        if found:
            alarms += 1
            alarm_examples.append((case.source, case.layer, case.shape, truth, [f.name for f in found]))
        rows.append({"source": case.source, "layer": case.layer, "shape": list(case.shape),
                     "truth": list(truth), "identified": [rule, fam], "confidence": conf,
                     "right": ok, "alarms": [f.name for f in found]})

    print(f"# initaudit calibration ({len(cases)} tensors; sources: "
          + ", ".join(k for k, v in sources.items() if v) + f"; {time.time() - t0:.0f} s)\n")
    print("| size band (elements) | tensors | rule+family right | confidently wrong (conf >= 0.9) |")
    print("|---|---|---|---|")
    for _, _, band in BANDS:
        if total[band]:
            print(f"| {band} | {total[band]} | {right[band] / total[band]:.2%} | "
                  f"{confident_wrong[band]} |")
    print(f"\nFalse alarms (error/warning findings on correctly initialized tensors, each audited "
          f"with the activation its scheme suits): {alarms} of {len(cases)} "
          f"({alarms / len(cases):.3%})")
    for ex in alarm_examples[:10]:
        print("  alarm:", ex)
    for _, _, band in BANDS:
        mistakes = [(k, v) for k, v in confusion[band].items() if k[0] != k[1]]
        if mistakes:
            print(f"\nConfusions in band {band} (truth -> identified: count):")
            for (t, p), v in sorted(mistakes, key=lambda kv: -kv[1])[:15]:
                print(f"  {t:28s} -> {p:28s} {v}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
