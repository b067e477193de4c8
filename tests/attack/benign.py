"""Benign checkpoints written by the frameworks themselves: none of them may be flagged.

``python tests/attack/benign.py OUTDIR`` writes them (used by benchmarks/scanners.py and by
tests/test_attack_benign.py); each framework is optional and skipped when absent.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path


def torch_files(d: Path) -> list[Path]:
    try:
        import torch
    except ImportError:
        return []
    torch.manual_seed(0)
    out: list[Path] = []
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10))

    def save(obj: object, name: str, **kw: object) -> None:
        p = d / name
        torch.save(obj, p, **kw)  # type: ignore[arg-type]
        out.append(p)

    save(net.state_dict(), "state_dict.pt")
    save(net, "whole_sequential.pt")
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    save(opt.state_dict(), "adam_state_dict.pt")
    save({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "lr": 1e-3},
         "training_checkpoint.pt")
    save(torch.nn.Parameter(torch.randn(4, 4)), "parameter.pt")
    save(net.state_dict(), "legacy_state_dict.pt", _use_new_zipfile_serialization=False)
    save(net.state_dict(), "proto4_state_dict.pt", pickle_protocol=4)
    scripted = torch.jit.script(net)
    p = d / "torchscript.pt"
    torch.jit.save(scripted, p)
    out.append(p)
    ep = torch.export.export(net.eval(), (torch.randn(1, 3, 8, 8),))
    p = d / "exported.pt2"
    torch.export.save(ep, p)
    out.append(p)
    return out


def numpy_files(d: Path) -> list[Path]:
    import numpy as np

    rng = np.random.default_rng(0)
    w = {"fc.weight": rng.normal(size=(16, 8)).astype(np.float32), "fc.bias": np.zeros(16, np.float32)}
    p1, p2 = d / "arrays.npz", d / "arrays_compressed.npz"
    np.savez(p1, **w)
    np.savez_compressed(p2, **w)
    return [p1, p2]


def keras_files(d: Path) -> list[Path]:
    try:
        import keras
    except ImportError:
        return []
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(4)])
    p1, p2 = d / "model.keras", d / "model.h5"
    model.save(p1)
    model.save(p2)
    return [p1, p2]


def write_all(d: Path) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    with io.StringIO():
        return torch_files(d) + numpy_files(d) + keras_files(d)


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1])):
        print(path)
