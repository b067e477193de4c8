"""The calibration set's verdicts are pinned: a speed change (issue 14) or any other may not move
them silently. benchmarks/calibration.py's numpy grid (every scheme family and layer kind, 64 to
~260K elements, one seed) is re-run and compared case by case with the committed snapshot; the
targets the README states (no confidently wrong identification, no false alarm) are checked too.

Regenerate the snapshot only for a deliberate change, and say why in the commit:
    python benchmarks/calibration.py --quick --seeds 1 --sources numpy \\
        --json tests/data/calibration_numpy_quick.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "calibration_numpy_quick.json"


def _key(row: dict) -> tuple:
    return (row["source"], row["layer"], tuple(row["shape"]), tuple(row["truth"]))


def test_calibration_verdicts_are_unchanged(tmp_path, capsys) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import calibration
    finally:
        sys.path.pop(0)
    out = tmp_path / "calibration.json"
    assert calibration.main(["--quick", "--seeds", "1", "--sources", "numpy", "--json", str(out)]) == 0
    capsys.readouterr()
    now = json.loads(out.read_text())
    pinned = json.loads(SNAPSHOT.read_text())
    assert [_key(r) for r in now] == [_key(r) for r in pinned], "the grid changed: regenerate"
    changed = [
        (_key(a), a["identified"], b["identified"], a["alarms"], b["alarms"])
        for a, b in zip(pinned, now)
        if (a["identified"], a["right"], sorted(a["alarms"])) != (b["identified"], b["right"], sorted(b["alarms"]))
    ]
    assert not changed, f"{len(changed)} verdicts moved, e.g. {changed[:3]}"
    assert not any(r["alarms"] for r in now)  # no false alarm on a correctly drawn tensor
    assert not any(not r["right"] and r["confidence"] >= 0.9 for r in now)  # none confidently wrong
    assert len(now) >= 250
