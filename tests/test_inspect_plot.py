"""``initaudit inspect PATH --layer GLOB --plot``: a terminal histogram of each kernel against
the identified scheme's density (●) and the density a finding recommends (○)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from initaudit.cli import main
from initaudit.cli.inspect import PLOT_BINS, PLOT_WIDTH

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
MLP = str(SAMPLES / "mlp_he_sigmoid.onnx")
ROW = re.compile(r"^\s+(-?[\d.e+-]+) │(.*)$")


def plot_rows(out: str, tensor: str) -> list[tuple[float, str]]:
    block = out[out.index(tensor):]
    rows = []
    for line in block.splitlines()[1:]:
        m = ROW.match(line)
        if m:
            rows.append((float(m.group(1)), m.group(2)))
        elif rows:
            break
    return rows


def test_plot_draws_bars_and_both_densities_for_he_before_sigmoid(capsys):
    code = main(["inspect", MLP, "--layer", "fc1", "--plot", "--no-color"])
    out = capsys.readouterr().out
    assert code == 0
    assert "● He/Kaiming normal (fan_in)" in out
    assert "○ Glorot/Xavier normal (std 0.0707) (IA101)" in out
    rows = plot_rows(out, "fc1.weight  kernel")
    assert len(rows) == PLOT_BINS
    centres = np.array([c for c, _ in rows])
    bars = np.array([len(r.rstrip(" ●○◉").replace(" ", "")) for _, r in rows])
    # the bars follow a bell: longest near 0, shortest at the ends, within the plot width
    assert abs(centres[int(np.argmax(bars))]) < 0.05
    assert bars[0] <= 2 and bars[-1] <= 2 and bars.max() <= PLOT_WIDTH + 1
    # the ○ (Glorot, narrower) peaks higher than ● (He) at the centre: it sits further right
    middle = rows[int(np.argmin(np.abs(centres)))][1]
    assert "○" in middle and ("●" not in middle or middle.index("○") > middle.index("●"))
    # ● marks the He density: at 1 std (≈0.082) it is exp(-1/2) of its peak
    he_peak = max(r.index("●") for _, r in rows if "●" in r)
    near = min(rows, key=lambda cr: abs(cr[0] - math.sqrt(2 / 300)))[1]
    if "●" in near:
        assert abs(near.index("●") / he_peak - math.exp(-0.5)) < 0.2


def test_plot_only_for_kernels_and_only_identified_density_without_finding(capsys):
    code = main(["inspect", MLP, "--layer", "fc2*", "--plot", "--no-color"])
    out = capsys.readouterr().out
    assert code == 0
    assert "● " in out and "○" not in out  # fc2 has no finding: only its own scheme
    assert len(plot_rows(out, "fc2.weight  kernel")) == PLOT_BINS
    assert "fc2.bias" in out and len(plot_rows(out, "fc2.bias")) == 0  # no plot for a bias


def test_plot_needs_the_human_format(capsys):
    assert main(["inspect", MLP, "--plot", "--format", "json"]) == 2
    assert "--plot draws in the terminal" in capsys.readouterr().err


def test_without_plot_nothing_is_drawn(capsys):
    main(["inspect", MLP, "--layer", "fc1", "--no-color"])
    out = capsys.readouterr().out
    assert "│" not in out and "●" not in out
