"""What the pictures draw: a reproducible sample of a kernel's values, its histogram, and the
density of an init scheme (shared by the HTML report and ``inspect --plot``).

The engine keeps only moments, so the values are re-read here from the file (``loaders.load``
then ``WeightTensor.load``), never executed, and subsampled with a fixed seed so that two runs
draw the same picture.

Densities take the scheme's *realised* std (``SchemeResult.expected_std`` /
``Candidate.expected_std``, which is what :mod:`initaudit.analysis.schemes` predicts):

- normal: N(0, std²);
- truncated_normal: N(0, σ²) cut at ±2σ and renormalised, σ = std / 0.8796 (the realised std of
  a normal truncated at ±2 of its own σ, ``schemes.TN2_STD_FACTOR``);
- uniform: U(±std·√3);
- orthogonal: the entries of a random orthogonal matrix are close to N(0, std²) for any matrix
  of more than a few rows (drawn as normal, labelled as such).
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from ..activations import ActivationHint
    from ..report import FileReport, Finding, TensorReport

# the realised std of a normal truncated at +-2 of its own sigma, per unit sigma (schemes.py)
TN2_STD_FACTOR = 0.87962566103423978
# values drawn per histogram: enough for a smooth 40-bin histogram, small enough for an HTML file
SAMPLE_SIZE = 4000
# roles whose values an init scheme is about (engine.SCHEMED_ROLES, by value)
from ..model import SCHEMED_ROLE_NAMES as SCHEMED_ROLES  # noqa: E402

# evidence keys a finding uses for the std of the scheme it recommends instead (rules/*.py)
_SUGGESTED_STD = re.compile(r"^(glorot|he|lecun|xavier|kaiming)_std$")
_SUGGESTED_LABEL = {
    "glorot": "Glorot/Xavier",
    "xavier": "Glorot/Xavier",
    "he": "He/Kaiming",
    "kaiming": "He/Kaiming",
    "lecun": "LeCun",
}


# rules whose evidence ``expected_std`` is the std of a scheme they name (rules/*.py)
_RULE_WANTS = {"selu-without-lecun": "LeCun"}


@dataclass(frozen=True)
class Curve:
    """One density drawn over a histogram."""

    label: str
    distribution: str  # normal, truncated_normal, uniform, orthogonal
    std: float
    role: str  # "identified" (the scheme the values match) or "suggested" (what a finding wants)
    source: str | None = None  # the finding code that suggested it


def pdf(x: np.ndarray, distribution: str, std: float) -> np.ndarray:
    """The density at ``x`` of a zero-mean scheme of realised std ``std``."""
    x = np.asarray(x, dtype=np.float64)
    if not std > 0:
        return np.zeros_like(x)
    if distribution == "uniform":
        bound = std * math.sqrt(3.0)
        return np.where(np.abs(x) <= bound, 1.0 / (2.0 * bound), 0.0)
    if distribution == "truncated_normal":
        sigma = std / TN2_STD_FACTOR
        mass = math.erf(2.0 / math.sqrt(2.0))  # P(|z| <= 2)
        body = np.exp(-0.5 * (x / sigma) ** 2) / (sigma * math.sqrt(2.0 * math.pi) * mass)
        return np.where(np.abs(x) <= 2.0 * sigma, body, 0.0)
    # normal, and orthogonal (entries ~ N(0, 1/n) for a random orthogonal n x m matrix)
    return np.exp(-0.5 * (x / std) ** 2) / (std * math.sqrt(2.0 * math.pi))


def sample_values(values: Any, n: int = SAMPLE_SIZE, seed: int = 0) -> np.ndarray:
    """A reproducible sample of at most ``n`` finite values of ``values``, as float64."""
    flat = np.asarray(values).reshape(-1)
    if flat.size > n:
        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(flat.size, size=n, replace=False))
        flat = flat[idx]
    out = np.asarray(flat, dtype=np.float64)
    return out[np.isfinite(out)]


def histogram(
    sample: np.ndarray, curves: list[Curve], bins: int = 40
) -> tuple[np.ndarray, np.ndarray]:
    """(edges, density) of ``sample`` over a range that also shows the curves' bulk."""
    lo = float(sample.min()) if sample.size else 0.0
    hi = float(sample.max()) if sample.size else 0.0
    for c in curves:  # 3 std of each density, so a narrow sample still shows the expected bell
        lo, hi = min(lo, -3.0 * c.std), max(hi, 3.0 * c.std)
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    density, edges = np.histogram(sample, bins=bins, range=(lo, hi), density=sample.size > 0)
    return edges, np.nan_to_num(density.astype(np.float64))


def curves_for(tensor: TensorReport, findings: list[Finding]) -> list[Curve]:
    """The identified scheme's density, and each density a finding on this tensor recommends."""
    out: list[Curve] = []
    sc = tensor.scheme
    if (
        sc is not None
        and sc.known
        and sc.expected_std
        and sc.distribution in ("normal", "truncated_normal", "uniform", "orthogonal")
    ):
        out.append(
            Curve(
                label=sc.label,
                distribution=sc.distribution,
                std=float(sc.expected_std),
                role="identified",
            )
        )
    for f in findings:
        if f.tensor != tensor.name:
            continue
        for key, value in f.evidence.items():
            wanted: float | None = None
            label = ""
            if _SUGGESTED_STD.match(key) and isinstance(value, (int, float)):
                wanted = float(value)
                label = f"{_SUGGESTED_LABEL[key.split('_')[0]]} normal (std {wanted:.3g})"
            elif (
                key == "expected_std"
                and isinstance(value, (int, float))
                and sc is not None
                and sc.expected_std
                and abs(float(value) / sc.expected_std - 1.0) > 0.01
            ):
                # a rule whose expected_std is not the identified one names what it wants
                # (selu-without-lecun: LeCun's std)
                wanted = float(value)
                named = _RULE_WANTS.get(f.name)
                label = (
                    f"{named} normal (std {wanted:.3g})"
                    if named
                    else f"{f.name} expects std {wanted:.3g} (normal)"
                )
            if wanted is None or not wanted > 0 or not math.isfinite(wanted):
                continue
            if any(abs(c.std / wanted - 1.0) < 1e-6 for c in out):
                continue
            out.append(
                Curve(
                    label=label, distribution="normal", std=wanted, role="suggested", source=f.code
                )
            )
    return out


def analysed_kernels(fr: FileReport) -> list[TensorReport]:
    """The tensors a histogram is drawn for: scheme-bearing roles that were analysed."""
    return [
        t
        for t in fr.tensors
        if t.role in SCHEMED_ROLES
        and t.skipped is None
        and t.stats is not None
        and t.stats.size >= 2
    ]


def load_samples(
    path: str,
    names: list[str],
    *,
    hints: tuple[ActivationHint, ...] = (),
    seed: int = 0,
    n: int = SAMPLE_SIZE,
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Re-read ``names`` from the checkpoint at ``path``: (samples by name, reason by name for
    those that could not be read). Never raises for a bad file."""
    from ..loaders import LoadOptions, load

    samples: dict[str, np.ndarray] = {}
    problems: dict[str, str] = {}
    try:
        model = load(path, LoadOptions(hints=hints))
    except Exception as exc:  # noqa: BLE001  the report still renders, without pictures
        return {}, {
            name: f"could not re-read the file ({type(exc).__name__}: {exc})" for name in names
        }
    by_name = {t.name: t for t in model.tensors()}
    for name in names:
        tensor = by_name.get(name)
        if tensor is None:
            problems[name] = "not found when the file was re-read"
            continue
        try:
            # seeded by name: the same tensor gets the same sample whatever else is drawn
            samples[name] = sample_values(
                tensor.load(), n=n, seed=seed + zlib.crc32(name.encode("utf-8"))
            )
        except Exception as exc:  # noqa: BLE001  this card says why it has no picture
            problems[name] = f"could not be re-read ({type(exc).__name__}: {exc})"
    return samples, problems
