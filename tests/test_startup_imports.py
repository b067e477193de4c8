"""The fixed start-up cost of a CLI audit: a local file audited with ``--format json`` imports
only what that run uses. Not timed: it checks which modules were imported (each one costs its
import, and without a bytecode cache its compilation). The heavy third-party modules are checked
in test_perf_imports.py; this checks initaudit's own optional parts and the standard-library
modules they would drag in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _subproc import run_python  # tests/ is on the path

PROBE = r"""
import runpy, sys
sys.argv = ["initaudit", *sys.argv[1:]]
try:
    runpy.run_module("initaudit", run_name="__main__")
except SystemExit as exc:
    print("EXIT=" + str(exc.code), file=sys.stderr)
print("MODULES=" + ",".join(sorted(sys.modules)), file=sys.stderr)
"""

# what a clean audit of one local file does not need, and who needs it instead
NOT_NEEDED = (
    "initaudit.remote",  # s3://, hf://, https:// arguments only
    "initaudit.baseline",  # --baseline, --write-baseline, per-tensor ignores
    "initaudit.cache",  # --cache
    "initaudit.distributed",  # --executor
    "initaudit.reporters.human",  # the terminal report (and rich with it)
    "multiprocessing",  # --jobs > 1 with several files (runner's process pool)
    "concurrent.futures.process",
    "concurrent.futures",  # a thread pool: several tensors on more than one worker (engine)
    "logging",  # (concurrent.futures imports it)
    "glob",  # a path that does not exist: is it a pattern? (discover)
    "tomllib",  # a config file to parse
    "tomli",
    "pickletools",  # recognising pickles
    # the other commands: the console script registers only the one it runs
    "initaudit.cli.rules",
    "initaudit.cli.explain",
    "initaudit.cli.config",
    "initaudit.cli.inspect",
    "initaudit.cli.diff",
)


def _write_safetensors(path: Path) -> None:
    import numpy as np

    a = np.random.default_rng(0).normal(0, 0.05, (32, 16)).astype("<f4")
    header = json.dumps({"fc.weight": {"dtype": "F32", "shape": [32, 16],
                                       "data_offsets": [0, a.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + a.tobytes())


def _modules(args: list[str], cwd: Path) -> tuple[set[str], str]:
    out = run_python(PROBE, *args, cwd=cwd)
    lines = out.stderr.splitlines()
    mods = next(ln for ln in lines if ln.startswith("MODULES="))[len("MODULES="):]
    code = next(ln for ln in lines if ln.startswith("EXIT="))[len("EXIT="):]
    return set(mods.split(",")), code


def test_local_json_audit_imports_only_what_it_uses(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    loaded, code = _modules([str(path), "--format", "json", "-o", os.devnull, "--exit-zero"],
                            tmp_path)
    assert code == "0"
    assert "initaudit.engine" in loaded  # the probe did audit the file
    assert sorted(m for m in NOT_NEEDED if m in loaded) == []


def test_folder_audit_loads_the_baseline_module_only_for_ignores(tmp_path: Path) -> None:
    """A walked folder checks its per-tensor ignores for stale ones: with none configured that
    needs no initaudit.baseline; with one, the module loads and the stale ignore is reported."""
    _write_safetensors(tmp_path / "m.safetensors")
    args = [str(tmp_path), "--format", "json", "-o", os.devnull, "--exit-zero"]
    loaded, code = _modules(args, tmp_path)
    assert code == "0" and "initaudit.engine" in loaded
    assert "initaudit.baseline" not in loaded
    (tmp_path / "initaudit.toml").write_text(
        '[[per-tensor-ignores]]\npattern = "nothing.*"\nreason = "test"\n', encoding="utf-8")
    loaded, code = _modules(args, tmp_path)
    assert code == "0" and "initaudit.baseline" in loaded


def test_remote_and_config_modules_load_when_used(tmp_path: Path) -> None:
    """The other side: a config file is parsed (tomllib) and a URL goes to initaudit.remote,
    so the lazy imports above are not a way of skipping them."""
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    (tmp_path / "initaudit.toml").write_text('fail-on = "warning"\n', encoding="utf-8")
    loaded, _ = _modules([str(path), "--format", "json", "-o", os.devnull, "--exit-zero"],
                         tmp_path)
    assert "tomllib" in loaded or "tomli" in loaded
    # an unknown scheme: fails in initaudit.remote without any network request
    loaded, code = _modules(["nosuchscheme://x/m.safetensors", "--format", "json"], tmp_path)
    assert "initaudit.remote" in loaded and code == "2"


def test_no_pydantic_of_our_own(tmp_path: Path) -> None:
    """typer 0.29 imports pydantic to coerce every option; initaudit itself never does."""
    import typer

    if tuple(int(p) for p in typer.__version__.split(".")[:2]) >= (0, 29):
        pytest.skip(f"typer {typer.__version__} imports pydantic itself")
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    loaded, _ = _modules([str(path), "--format", "json", "-o", os.devnull, "--exit-zero"],
                         tmp_path)
    assert "pydantic" not in loaded


def test_app_has_every_command_in_help_order() -> None:
    """``initaudit.cli.app`` (for embedders and typer's tooling) registers every command, in the
    order of ``--help``, even after ``main`` registered only the one it ran."""
    code = (
        "import contextlib, io\n"
        "from initaudit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['explain', 'IA101']) == 0\n"
        "from initaudit.cli import app\n"
        "print(','.join(c.name for c in app.registered_commands))\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["check,rules,explain,config,inspect,diff"]


def test_version_imports_no_typer(tmp_path: Path) -> None:
    """``initaudit --version`` is answered before typer (and the report vocabulary) load."""
    loaded, code = _modules(["--version"], tmp_path)
    assert code == "0"
    assert sorted(m for m in ("typer", "click", "numpy", "initaudit.report") if m in loaded) == []


GC_PROBE = r"""
import gc, os, sys
import initaudit.api as api
from initaudit.cli import main

during = []
real = api.audit_one


def spy(*args, **kwargs):
    during.append((gc.isenabled(), gc.get_freeze_count() > 0))
    return real(*args, **kwargs)


api.audit_one = spy
audit = [sys.argv[1], "--format", "json", "-o", os.devnull, "--exit-zero"]
assert main(audit) == 0
print("audit", during, gc.isenabled(), gc.get_freeze_count())
assert main([sys.argv[1], "--no-such-option"]) == 2
print("error", gc.isenabled(), gc.get_freeze_count())
gc.disable()
during.clear()
assert main(audit) == 0
print("disabled", during, gc.isenabled(), gc.get_freeze_count())
"""


def test_gc_is_paused_for_the_start_up_only(tmp_path: Path) -> None:
    """main() holds the garbage collector off while the modules load (start-up), collects
    during the audit (start-up's objects frozen), and leaves it as it found it: enabled and
    nothing frozen after an audit or a usage error; a caller's gc.disable() is kept."""
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    out = run_python(GC_PROBE, str(path), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "audit [(True, True)] True 0",
        "error True 0",
        "disabled [(False, False)] False 0",
    ]


def test_check_annotations_are_objects_not_strings() -> None:
    """typer reads check()'s annotations on every run: as strings (``from __future__ import
    annotations``) each one would be compiled and evaluated again (~3% of a one-file audit)."""
    from initaudit.cli.check import check

    strings = [name for name, a in check.__annotations__.items() if isinstance(a, str)]
    assert strings == []


# the audit as PROBE runs it, then what OpenBLAS was loaded with
BLAS_PROBE = PROBE + r"""
import os
from initaudit.analysis.blas import _controls
print("ENV=" + os.environ.get("OPENBLAS_NUM_THREADS", "unset"), file=sys.stderr)
print("THREADS=" + ",".join(str(get()) for get, _ in _controls()), file=sys.stderr)
"""


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("2", "2")])
def test_console_script_loads_openblas_single_threaded(tmp_path: Path, given: str | None,
                                                       expected: str) -> None:
    """OpenBLAS would start a thread per core as numpy loads, threads the audit never uses (it
    pins OpenBLAS to one around its work): the console script asks for one thread before numpy
    loads, unless the user chose a number."""
    path = tmp_path / "m.safetensors"
    _write_safetensors(path)
    out = run_python(BLAS_PROBE, str(path), "--format", "json", "-o", os.devnull, "--exit-zero",
                     cwd=tmp_path, env={"OPENBLAS_NUM_THREADS": given})
    lines = out.stderr.splitlines()
    assert f"ENV={expected}" in lines, out.stderr
    if expected == "1":  # the library itself was loaded with one thread (restored after the audit)
        threads = next(ln for ln in lines if ln.startswith("THREADS="))[len("THREADS="):]
        assert threads and set(threads.split(",")) == {"1"}, out.stderr
