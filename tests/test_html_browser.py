"""The HTML report in a real headless browser: Chromium loads it from disk with no network,
prints no console message (a blocked request under the page's Content-Security-Policy, a script
error or any console call would be one), the DOM after scripts ran has one histogram per
analysed kernel, and a screenshot is taken and is a real picture.

Skips cleanly where Chromium is absent (Debian: ``apt-get install -y chromium``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_html_report import (
    SAMPLE_FILES,
    check_html,
    hf_report,
    kernels_analysed,
    n_histograms,
)

from initaudit.engine import AuditConfig, audit_path
from initaudit.report import Report
from initaudit.reporters.html import render

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser",
                                                        "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0")


def open_in_chromium(page: Path, tmp_path: Path, *, size: str = "1200,1600", query: str = ""
                     ) -> tuple[str, list[str], Path]:
    """(DOM after scripts ran, console messages, screenshot path) of ``page``."""
    shot = tmp_path / f"{page.stem}{len(query)}.png"
    profile = tmp_path / f"profile-{page.stem}{len(query)}"  # a fresh profile per run
    proc = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
         f"--screenshot={shot}", "--dump-dom", page.resolve().as_uri() + query],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console, shot


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_console_check_catches_errors_and_blocked_requests(tmp_path):
    """The negative control: the console check is not blind."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" "
                   "content=\"default-src 'none'; script-src 'unsafe-inline'\"></head><body>"
                   "<img src=\"http://198.51.100.1/x.png\" alt=\"\"><script>nothing();</script>"
                   "</body></html>", encoding="utf-8")
    _, console, _ = open_in_chromium(bad, tmp_path, size="400,300")
    text = "\n".join(console)
    assert "Content Security Policy" in text and "nothing is not defined" in text


def test_sample_models_report_in_chromium(tmp_path):
    report = Report(files=[audit_path(p) for p in SAMPLE_FILES])
    page = tmp_path / "samples.html"
    page.write_text(render(report, config=AuditConfig()), encoding="utf-8")
    dom, console, shot = open_in_chromium(page, tmp_path)
    assert console == []
    assert n_histograms(check_html(page.read_text(encoding="utf-8"))) == kernels_analysed(report)
    assert len(re.findall(r'<svg class="hist"', dom)) == kernels_analysed(report)
    # the filter script ran: it wrote the count of cards shown (all of them, no filter yet)
    assert f"{kernels_analysed(report)} layer card(s) shown" in dom
    assert_png(shot)


def test_filter_by_name_and_severity_in_chromium(tmp_path):
    """The inline script filters: ?name=fc1 keeps the fc1 cards of every file; ?sev=error keeps
    the cards with an error finding."""
    files = [p for i, p in enumerate(SAMPLE_FILES)
             if p.name in ("mlp_he_sigmoid.onnx", "mlp_relu_clean.onnx", "exploding_normal.onnx")]
    report = Report(files=[audit_path(p) for p in files])
    page = tmp_path / "filter.html"
    page.write_text(render(report, config=AuditConfig()), encoding="utf-8")
    names = [t.name for fr in report.files for t in fr.tensors if t.scheme is not None]
    errors = {(fr.path, f.tensor) for fr in report.files for f in fr.findings
              if f.severity.value == "error" and f.tensor}
    assert errors and len(errors) < len(names)
    for query, expected in (("?name=fc1", sum(1 for n in names if "fc1" in n)),
                            ("?sev=error", len(errors))):
        dom, console, _ = open_in_chromium(page, tmp_path, size="800,600", query=query)
        assert console == []
        shown = [m for m in re.findall(r'<article class="tensor([^"]*)"', dom) if "hidden" not in m]
        assert len(shown) == expected, query
        assert f"{expected} layer card(s) shown" in dom


@pytest.mark.frameworks
def test_hugging_face_report_in_chromium(tmp_path):
    text, report = hf_report(tmp_path)
    page = tmp_path / "bert.html"
    page.write_text(text, encoding="utf-8")
    dom, console, shot = open_in_chromium(page, tmp_path)
    assert console == []
    assert len(re.findall(r'<svg class="hist"', dom)) == kernels_analysed(report)
    assert_png(shot)


def test_diff_report_in_chromium(tmp_path):
    from initaudit.diff import diff_paths
    from initaudit.reporters.html import render_diff

    sample = SAMPLE_FILES[0]
    page = tmp_path / "diff.html"
    page.write_text(render_diff(diff_paths(sample, sample)), encoding="utf-8")
    check_html(page.read_text(encoding="utf-8"))
    dom, console, shot = open_in_chromium(page, tmp_path, size="1000,800")
    assert console == []
    assert "tensor row(s) shown" in dom
    assert_png(shot)
