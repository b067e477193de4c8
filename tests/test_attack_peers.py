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
