"""Rule metadata read by the engine and the reporters: the family of each code, and the one
trained-weights policy (``on_trained``) applied by the rule base with one wording."""

from __future__ import annotations

import pytest

from initaudit.analysis.state import State, StateResult
from initaudit.model import LoadedModel
from initaudit.report import Finding, Severity
from initaudit.rules import registry
from initaudit.rules.base import (
    KEEP_WHEN_TRAINED,
    TRAINED_NOTE,
    Family,
    OnTrained,
    RuleContext,
)

TRAINED = StateResult(State.TRAINED, 0.9, "heavy tails")
FRESH = StateResult(State.INITIALIZED, 0.9, "i.i.d.")


def _ctx(state: StateResult) -> RuleContext:
    return RuleContext(model=LoadedModel(path="m", format="npz"), analyses=(), file_state=state)


def test_every_rule_has_the_family_of_its_code() -> None:
    prefixes = {f: f.prefix for f in Family}
    for r in registry().values():
        assert r.code.startswith(prefixes[r.family])
    assert Family.of_code("IA601") is Family.SIGNAL
    with pytest.raises(ValueError):
        Family.of_code("IA901")


def test_rule_index_names_every_family() -> None:
    from pathlib import Path

    index = (Path(__file__).resolve().parents[1] / "rules" / "README.md").read_text()
    for fam in Family:
        assert f"{fam.prefix}xx" in index, fam


def test_pairing_and_scale_rules_step_back_on_trained_weights_with_one_wording() -> None:
    downgraded = {r.code for r in registry().values() if r.on_trained is OnTrained.INFO}
    assert {"IA101", "IA103", "IA204", "IA301", "IA302", "IA303", "IA601"} <= downgraded
    assert registry()["IA102"].on_trained is OnTrained.SKIP
    # defects that matter whatever the history keep their severity
    for code in ("IA201", "IA202", "IA203", "IA501"):
        assert registry()[code].on_trained is OnTrained.KEEP
    r = registry()["IA302"]
    f = Finding(code=r.code, name=r.name, severity=Severity.WARNING, confidence=1.0, message="m.")
    out = r.apply_trained_policy(_ctx(TRAINED), f)
    assert out is not None and out.severity is Severity.INFO
    assert out.message == "m." + TRAINED_NOTE and out.evidence["looks_trained"] is True
    assert r.apply_trained_policy(_ctx(FRESH), f) is f
    assert registry()["IA102"].apply_trained_policy(_ctx(TRAINED), f) is None


def test_a_blow_up_beyond_any_training_keeps_its_error() -> None:
    r = registry()["IA301"]
    f = Finding(code=r.code, name=r.name, severity=Severity.ERROR, confidence=1.0, message="m.",
                evidence={KEEP_WHEN_TRAINED: True})
    assert r.apply_trained_policy(_ctx(TRAINED), f) is f
