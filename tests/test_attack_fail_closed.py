"""Issue 11: whatever a framework loader would execute is flagged unsafe-content, every time.

Each crafted file (tests/attack/craft.py) carries a payload the framework's own loader runs.
initaudit must report IA501 for it (even when the file then fails to parse), exit non-zero, and
never run it: a sentinel file proves nothing executed. A second test proves the payloads are
real by letting the framework load a few of them in a throw-away subprocess.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from initaudit.engine import AuditConfig, audit_path
from initaudit.report import Report
from tests.attack import craft


def _flagged(path: Path) -> tuple[list[str], int, str | None]:
    fr = audit_path(path, AuditConfig())
    whats = [f.message for f in fr.findings if f.code == "IA501"]
    return whats, Report(files=[fr]).exit_code(), fr.error


@pytest.fixture(scope="module")
def pure(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], Path]:
    d = tmp_path_factory.mktemp("attack")
    sentinel = d / "SENTINEL"
    return craft.pure_cases(d, sentinel), sentinel


PURE = ["zip_filehandler.pt", "proto0.pkl", "proto1.pkl", "proto4_os_system.pkl",
        "partial_called.pkl", "rebuild_from_type_v2.pkl", "copyreg_reconstructor.pkl",
        "rebuild_lookalike.pkl", "dotted_to_os.pkl", "newobj_build.pkl", "build_on_code.pkl",
        "payload_then_garbage.pkl", "zip_payload_then_truncated.pt", "ext_opcode.pkl",
        "zip_upper_case.pt", "zip_duplicate_last_evil.pt", "zip_dressed_as_pt2.pt",
        "object_array.npz", "keras_deep_lambda.keras", "keras_lambda_broken_weights.keras"]


@pytest.mark.parametrize("name", PURE)
def test_crafted_file_is_flagged_and_never_run(pure, name: str) -> None:
    files, sentinel = pure
    assert set(files) == set(PURE)
    whats, code, error = _flagged(files[name])
    assert whats, f"{name}: not flagged (error: {error})"
    assert code in (1, 2)
    assert not sentinel.exists()


def test_payload_before_parse_error_is_reported_with_the_error(pure) -> None:
    files, _ = pure
    whats, code, error = _flagged(files["payload_then_garbage.pkl"])
    assert error and "opcode" in error  # the error is named ...
    assert any("logging.FileHandler" in w for w in whats)  # ... and the finding kept
    assert code == 2


def test_names_are_resolved_as_torch_does(pure) -> None:
    files, _ = pure
    whats, _, _ = _flagged(files["zip_duplicate_last_evil.pt"])
    assert any("twice" in w for w in whats) and any("FileHandler" in w for w in whats)
    whats, _, _ = _flagged(files["zip_upper_case.pt"])
    assert any("FileHandler" in w for w in whats)


@pytest.mark.frameworks
def test_torch_built_cases_are_flagged(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    sentinel = tmp_path / "SENTINEL"
    files = craft.torch_cases(tmp_path, sentinel)
    assert len(files) == 9
    for name, path in files.items():
        whats, code, error = _flagged(path)
        assert whats, f"{name}: not flagged (error: {error})"
        assert code in (1, 2)
    assert not sentinel.exists()


_RUN = {
    "torch": "import torch; torch.load({path!r}, weights_only=False)",
    "pt2": "import torch; torch.export.load({path!r})",
    "numpy": "import numpy as np; dict(np.load({path!r}, allow_pickle=True))",
}


@pytest.mark.frameworks
@pytest.mark.parametrize("name,how", [
    ("zip_filehandler.pt", "torch"), ("proto0.pkl", "torch"), ("partial_called.pkl", "torch"),
    ("copyreg_reconstructor.pkl", "torch"), ("dotted_to_os.pkl", "torch"),
    ("payload_then_garbage.pkl", "torch"), ("object_array.npz", "numpy"),
])
def test_the_framework_really_runs_the_payload(tmp_path: Path, name: str, how: str) -> None:
    """The corpus is not a strawman: the framework's own loader creates the sentinel."""
    pytest.importorskip("torch")
    sentinel = tmp_path / "SENTINEL"
    files = craft.pure_cases(tmp_path, sentinel)
    code = _RUN[how].format(path=str(files[name]))
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, timeout=120,
                   capture_output=True, check=False)
    assert sentinel.exists(), f"{name}: the framework did not run the payload"
