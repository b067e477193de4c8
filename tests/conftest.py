"""Shared test setup: run the suite from a source checkout without installing the package."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# Statistical properties have small designed error rates (a 1e-4 goodness-of-fit alpha, a
# 3.29-sigma interval): CI must not flake on a one-in-ten-thousand draw, so property tests use
# a fixed sequence of examples. HYPOTHESIS_PROFILE=explore draws fresh examples on each run.
import os  # noqa: E402

from hypothesis import settings  # noqa: E402

settings.register_profile("initaudit", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "initaudit"))

# torchvision's CUDA-linked ops need their schemas declared before anything imports it
# (transformers does, for BertModel too): see tests/_tv.py
import importlib.util  # noqa: E402

if importlib.util.find_spec("torchvision") is not None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _tv import prepare_torchvision  # noqa: E402

    prepare_torchvision()
