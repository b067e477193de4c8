"""Issue 11: the files the peer scanners' test suites write at run time (modelscan's fixtures,
ModelAudit's asset generators; tests/attack/peer_generators.py): every malicious one is flagged
IA501, none of their benign ones is."""

from __future__ import annotations

from pathlib import Path

from initaudit.engine import AuditConfig, audit_path
from tests.attack import peer_generators


def test_peers_generated_files_are_classed_as_their_authors_meant(tmp_path: Path) -> None:
    files = peer_generators.write_all(tmp_path)
    assert len(files) >= 40
    wrong = []
    for key, (path, label) in files.items():
        fr = audit_path(path, AuditConfig())
        flagged = any(f.code == "IA501" for f in fr.findings)
        if flagged != (label == "malicious"):
            wrong.append((key, label, fr.error, [f.message for f in fr.findings][:2]))
        if fr.error:
            assert "\n" not in fr.error and not fr.error.startswith("could not be read ("), fr.error
    assert not wrong, wrong
    assert sum(label == "malicious" for _, label in files.values()) >= 35


def test_fickling_frame_straddle_and_broken_protocol0_pickles_are_flagged(tmp_path: Path) -> None:
    """Two shapes from fickling's bypass tests (test/test_bypasses.py): an opcode that straddles
    a FRAME boundary (the C and Python unpicklers read on differently from there), and a
    protocol-0 pickle that fails to parse after its GLOBAL (pickle.load has already imported the
    module): both flagged. A text file that merely starts with an opcode letter is not."""
    cases = {
        "straddle.pkl": b"\x80\x05\x95\x05" + bytes(7) + b"B\x14\x00\x00\x00" + b"A" * 20 + b".",
        "nested_frame.pkl": b"\x80\x05\x95\x0c" + bytes(7) + b"\x95\x01" + bytes(7) + b"N.",
        "broken_p0.pkl": b"(cpty\nspawn\nS'id'o.",
        "broken_eval.pkl": b"cbuiltins\neval\nS\"print('hello')\"\x85R.",
    }
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        fr = audit_path(p, AuditConfig())
        assert any(f.code == "IA501" for f in fr.findings), (name, fr.error)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"config\nvalue\nother line\n")
    fr = audit_path(text, AuditConfig())
    assert not any(f.code == "IA501" for f in fr.findings)
    framed = tmp_path / "framed.pkl"  # a pickle CPython frames itself: never flagged
    import pickle

    framed.write_bytes(pickle.dumps({"w": list(range(70000)), "b": b"x" * 200000}, protocol=5))
    fr = audit_path(framed, AuditConfig())
    assert not any(f.code == "IA501" for f in fr.findings), fr.findings
