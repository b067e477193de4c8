"""Each rule page's example is checked against the tool's real output (ruff-style snapshots).

For every ``rules/<name>.md`` the first ```python block of "## Example that triggers it" is run
in a temporary directory with every RNG seeded (the seeded fixture), the ``$ initaudit ...``
command of the following ```console block is run in-process, and the finding blocks the page
shows must be exactly the finding blocks the tool prints (whitespace-normalised, so terminal
wrapping does not matter). A page whose example drifts from the tool fails here.

``INITAUDIT_UPDATE_RULE_DOCS=1 python -m pytest tests/test_rule_doc_examples.py`` rewrites the
console blocks from the real output (then review the diff).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from pathlib import Path

import pytest

pytestmark = pytest.mark.frameworks

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
PAGES = sorted(p for p in RULES_DIR.glob("*.md") if p.name != "README.md")
_EXAMPLE = re.compile(r"## Example that triggers it\n(?P<body>.*?)(?=\n## )", re.DOTALL)
_PY = re.compile(r"```python\n(?P<code>.*?)```", re.DOTALL)
_CONSOLE = re.compile(r"```console\n(?P<text>.*?)```", re.DOTALL)
# a finding block starts with a severity mark and level, continuation lines are indented
_FINDING_START = re.compile(r"^\s*(✗|x|!|i) (error|warning|info)\s+IA\d{3} ")
WIDTH = "120"


def _finding_blocks(text: str) -> list[str]:
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if _FINDING_START.match(line):
            current = [line.strip()]
            blocks.append(current)
        elif current is not None and line.startswith(" ") and line.strip():
            current.append(line.strip())
        else:
            current = None
    return [" ".join(b) for b in blocks]


def _run_example(code: str, folder: Path) -> None:
    torch = pytest.importorskip("torch")
    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        exec(compile(code, "example", "exec"), {"__name__": "__example__"})  # noqa: S102 - our own docs
    finally:
        os.chdir(cwd)


def _run_cli(command: str, folder: Path) -> str:
    from initaudit.cli import main

    argv = shlex.split(command)
    assert argv[0] == "initaudit", command
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            main(argv[1:] + ["--no-color"] if "--no-color" not in argv else argv[1:])
    finally:
        os.chdir(cwd)
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    return out.getvalue()


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_rule_page_example_matches_the_tool(page: Path, tmp_path: Path) -> None:
    text = page.read_text(encoding="utf-8")
    example = _EXAMPLE.search(text + "\n## ")
    assert example, f"{page.name}: no '## Example that triggers it' section"
    body = example.group("body")
    code, console = _PY.search(body), _CONSOLE.search(body)
    assert code and console, f"{page.name}: the example needs a python and a console block"
    lines = console.group("text").splitlines()
    assert lines and lines[0].startswith("$ initaudit "), f"{page.name}: console must start with $ initaudit"
    command = lines[0][2:]
    _run_example(code.group("code"), tmp_path)
    output = _run_cli(command, tmp_path)
    got = _finding_blocks(output)
    shown = _finding_blocks(console.group("text"))
    if os.environ.get("INITAUDIT_UPDATE_RULE_DOCS") and got != shown:
        keep: list[str] = []
        inside = False
        for ln in output.splitlines():  # a blank line ends a finding (the table follows one)
            if not ln.strip():
                inside = False
            elif _FINDING_START.match(ln):
                inside = True
                keep.append(ln.rstrip())
            elif inside and ln.startswith(" "):
                keep.append(ln.rstrip())
            else:
                inside = False
        new_console = "```console\n" + lines[0] + "\n" + "\n".join(keep) + "\n```"
        start, end = console.span()
        offset = example.start("body")
        page.write_text(text[:offset + start] + new_console + text[offset + end:], encoding="utf-8")
        shown = got
    assert shown, f"{page.name}: the console block shows no finding"
    assert got == shown, (f"{page.name}: the page's example output is stale.\npage:\n"
                          + "\n".join(shown) + "\ntool:\n" + "\n".join(got)
                          + "\n(INITAUDIT_UPDATE_RULE_DOCS=1 rewrites it)")
