"""The default terminal report is for people: on a 12-layer GPT-2 at 80 columns the finding
comes first, repeated blocks are one row each, nothing is wider than the terminal and tensor
names are never broken mid-word."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOT = ROOT / "tests" / "data" / "snapshots" / "gpt2_12_layers_80_columns.txt"
UPDATE = os.environ.get("INITAUDIT_UPDATE_SNAPSHOTS") == "1"


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """transformers' GPT-2 built from a config (12 layers, narrow so the test stays fast),
    saved with save_pretrained; one defect: block 7's c_fc weight is constant."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=12, n_embd=128, n_head=4, vocab_size=2000,
                                     n_positions=256, bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        model.transformer.h[7].mlp.c_fc.weight.fill_(0.5)
    folder = tmp_path_factory.mktemp("gpt2") / "gpt2-tiny"
    model.save_pretrained(folder)
    return folder


@pytest.mark.frameworks
@pytest.mark.e2e
def test_gpt2_report_at_80_columns(gpt2_folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "80", "NO_COLOR": "1"}
    proc = subprocess.run([sys.executable, "-m", "initaudit", "gpt2-tiny"], cwd=gpt2_folder.parent,
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    first = next(i for i, line in enumerate(lines) if "IA201" in line)
    assert first < 25 and len(lines) < 60, proc.stdout
    assert "transformer.h.7.mlp.c_fc.weight" in lines[first]
    # repeated blocks collapsed, the defect on its own row, names whole or cut in the middle
    assert any(re.search(r"h\.\{0\.\.6,8\.\.11\}\.mlp\.c_fc\.weight ×11", line) for line in lines)
    assert any(line.startswith("✗  h.7.mlp.c_fc.weight") for line in lines)
    start = next(i for i, line in enumerate(lines) if line.startswith("───"))
    end = next(i for i, line in enumerate(lines) if "not in the table" in line)
    table = lines[start + 1:end]
    assert table and all(re.match(r"^[ ✗!i]  (h\.|w|lm_head)", line) for line in table), \
        [line for line in table if not re.match(r"^[ ✗!i]  (h\.|w|lm_head)", line)]
    text = proc.stdout
    if UPDATE or not SNAPSHOT.exists():
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), (
        "the 80-column report changed; if deliberately, re-run with INITAUDIT_UPDATE_SNAPSHOTS=1")
    # --verbose: every tensor on its own row, nothing collapsed
    verbose = subprocess.run([sys.executable, "-m", "initaudit", "gpt2-tiny", "--verbose"],
                             cwd=gpt2_folder.parent, env={**env, "COLUMNS": "160"},
                             capture_output=True, text=True, timeout=300, check=False).stdout
    assert "transformer.h.11.mlp.c_proj.weight" in verbose and " ×12" not in verbose
