"""Speed and memory benchmark on large synthetic checkpoints, against the floor (one bare numpy
pass over the same bytes) and the formats' own loaders.

One command makes the checkpoints, measures, and writes the table to benchmarks/README.md:

    python benchmarks/perf.py                  # fp32 1.74 GB Llama (218 tensors), 1B bf16 sharded,
                                               # ~1 GB ONNX and torch zip, scaling series, cold cache
    python benchmarks/perf.py --scale 0.05 --series 0.02,0.05   # smoke test (a minute or two)
    python benchmarks/perf.py --keep           # keep benchmarks/_data/ (gitignored) afterwards

For every checkpoint, each tool runs in its own subprocess (so each peak memory is its own):

* ``initaudit``: the CLI, ``python -m initaudit PATH --format json -o /dev/null --exit-zero``;
* ``bare numpy pass`` (the floor, safetensors only): parse the header, memory-map the file and, per
  tensor, one matrix-vector product and a finite check: the least any tool that looks at every
  byte must do (bfloat16 widened by a shift, a block of <= 1M elements at a time into a reused
  buffer: numpy has no bf16 arithmetic). It runs with OpenBLAS on one thread
  (``OPENBLAS_NUM_THREADS=1``, as initaudit pins it): with numpy's default threads the same pass
  costs ~3x the CPU and ~3x the wall time on this shared 2-core machine (OpenBLAS threads spin for
  work), which would flatter every ratio; that variant is still shown, as ``bare numpy pass,
  OpenBLAS threads``;
* ``reference load``: the format's own library loading every tensor (``safetensors.numpy`` for
  float32, ``safetensors.torch(backend="pread")`` for bfloat16, ``onnx.load`` +
  ``numpy_helper.to_array``, ``torch.load(weights_only=True)``);
* ``peer``: weightwatcher's ``analyze()`` where it is importable (``--peer-python``), with a timeout.

initaudit and the floor run interleaved, best of ``--repeat``, so their ratio is taken under the
same load. Wall time is measured around the subprocess; peak RSS is ``ru_maxrss`` (it counts the
file's mapped pages, which are page cache, not memory the tool allocates); peak *anonymous* memory
(heap, buffers: what the tool really costs) is the maximum of ``RssAnon`` summed over the tool's
process tree (initaudit forks workers for a large safetensors file: their copy-on-write pages
shared with the parent count once per process, so the sum overstates, never hides, memory) from
``/proc/PID/status`` sampled every 2 ms. Before the warm runs the files are evicted from the page
cache and read back once (``warm``: a freshly read page cache, on which mapping the file costs
least, so the floor is fastest and the ratio strictest; see ``warm``'s docstring). The cold run
evicts the files from the page cache with ``posix_fadvise(POSIX_FADV_DONTNEED)`` before each tool
(no root, no effect on other processes' files).

Scaling: Llama-shaped sharded checkpoints of 0.1, 0.5, 1, 2, 4 B parameters in bf16 and fp32 are
generated on demand in a temporary directory (deleted after each point; never committed) and
audited, up to ``--series-max-gb`` per checkpoint (disk and time: the cap is printed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = HERE / "_data"
README = HERE / "README.md"
MARK_BEGIN = "<!-- perf:begin -->"
MARK_END = "<!-- perf:end -->"
GiB = 2**30


# ----------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class LlamaShape:
    hidden: int
    intermediate: int
    vocab: int
    layers: int
    tied: bool = False  # lm_head shares the embedding (not stored)

    @classmethod
    def scaled(cls, scale: float) -> LlamaShape:
        """TinyLlama-like proportions; ~1.06B parameters at scale 1, params ~ linear in scale."""
        r = math.sqrt(scale)
        hidden = max(64, int(round(2048 * r / 64)) * 64)
        return cls(hidden=hidden, intermediate=max(64, int(round(2.75 * hidden / 64)) * 64),
                   vocab=max(256, int(round(32000 * r))), layers=18)

    def tensors(self) -> list[tuple[str, tuple[int, ...], str]]:
        """(name, shape, init) in Hugging Face Llama naming; init is 'normal' or 'ones'."""
        h, i = self.hidden, self.intermediate
        out: list[tuple[str, tuple[int, ...], str]] = [("model.embed_tokens.weight", (self.vocab, h), "normal")]
        for k in range(self.layers):
            p = f"model.layers.{k}."
            out += [(p + "input_layernorm.weight", (h,), "ones"),
                    (p + "self_attn.q_proj.weight", (h, h), "normal"),
                    (p + "self_attn.k_proj.weight", (h, h), "normal"),
                    (p + "self_attn.v_proj.weight", (h, h), "normal"),
                    (p + "self_attn.o_proj.weight", (h, h), "normal"),
                    (p + "post_attention_layernorm.weight", (h,), "ones"),
                    (p + "mlp.gate_proj.weight", (i, h), "normal"),
                    (p + "mlp.up_proj.weight", (i, h), "normal"),
                    (p + "mlp.down_proj.weight", (h, i), "normal")]
        out += [("model.norm.weight", (h,), "ones")]
        if not self.tied:
            out.append(("lm_head.weight", (self.vocab, h), "normal"))
        return out

    def config(self) -> dict:
        return {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                "hidden_size": self.hidden, "intermediate_size": self.intermediate,
                "num_hidden_layers": self.layers, "num_attention_heads": max(1, self.hidden // 64),
                "num_key_value_heads": max(1, self.hidden // 64), "vocab_size": self.vocab,
                "hidden_act": "silu", "initializer_range": 0.02, "rms_norm_eps": 1e-5,
                "tie_word_embeddings": self.tied, "torch_dtype": "bfloat16"}


def _values(shape: tuple[int, ...], init: str, rng: np.random.Generator, dtype: np.dtype) -> np.ndarray:
    if init == "ones":
        return np.ones(shape, dtype=dtype)
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)
    step = 1 << 24  # generate in float32 chunks: the generator's own memory stays bounded too
    for s in range(0, flat.size, step):
        n = min(step, flat.size - s)
        flat[s:s + n] = (rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)).astype(dtype)
    return out


# the fp32 reference model: Llama-shaped, 24 layers, tied embedding, 218 tensors, 1.74 GB
FP32_LLAMA = LlamaShape(hidden=1024, intermediate=4096, vocab=32000, layers=24, tied=True)


def write_safetensors_sharded(folder: Path, shape: LlamaShape, shard_bytes: int = 500 * 10**6,
                              dtype: str = "bf16") -> int:
    """A Hugging Face-style sharded checkpoint (bf16 or fp32) written by hand (header JSON + raw
    bytes), one tensor in memory at a time. Returns the number of bytes written."""
    import ml_dtypes

    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bf16" else np.dtype("<f4")
    st_dtype = "BF16" if dtype == "bf16" else "F32"
    itemsize = np_dtype.itemsize
    folder.mkdir(parents=True, exist_ok=True)
    specs = shape.tensors()
    shards: list[list[tuple[str, tuple[int, ...], str]]] = [[]]
    size = 0
    for spec in specs:
        nbytes = math.prod(spec[1]) * itemsize
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    rng = np.random.default_rng(0)
    weight_map: dict[str, str] = {}
    total = 0
    for k, shard in enumerate(shards, 1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        header: dict = {"__metadata__": {"format": "pt"}}
        offset = 0
        for name, shp, _ in shard:
            nbytes = math.prod(shp) * itemsize
            header[name] = {"dtype": st_dtype, "shape": list(shp), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = fname
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(folder / fname, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little"))
            fh.write(raw)
            for _name, shp, init in shard:
                fh.write(_values(shp, init, rng, np_dtype).tobytes())
        total += 8 + len(raw) + offset
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (folder / "config.json").write_text(json.dumps(shape.config(), indent=1))
    return total


def onnx_layers(scale: float) -> tuple[int, int, int]:
    """(width, hidden, blocks) of an MLP stack: ~1 GB of float32 weights at scale 1."""
    width = max(64, int(round(2048 * math.sqrt(scale) / 64)) * 64)
    return width, 2 * width, 15


def write_onnx_external(folder: Path, scale: float) -> Path:
    """MatMul/Add/Relu blocks with torch's default Linear init (kaiming_uniform a=sqrt(5)),
    weights in one external data file written tensor by tensor."""
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    width, hidden, blocks = onnx_layers(scale)
    rng = np.random.default_rng(1)
    data_name = "model.onnx.data"
    inits, nodes = [], []
    offset = 0
    cur = "x"
    with open(folder / data_name, "wb") as fh:
        def add(name: str, arr: np.ndarray) -> None:
            nonlocal offset
            raw = np.ascontiguousarray(arr, dtype="<f4").tobytes()
            fh.write(raw)
            t = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(arr.shape))
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)
            offset += len(raw)
            pad = -offset % 4096  # page-align like onnx's own writer does with align
            fh.write(b"\0" * pad)
            offset += pad

        for b in range(blocks):
            for j, (fi, fo, act) in enumerate(((width, hidden, "Relu"), (hidden, width, "Tanh"))):
                bound = 1.0 / math.sqrt(fi)  # kaiming_uniform(a=sqrt(5)) => U(-1/sqrt(fan_in), ..)
                w = rng.uniform(-bound, bound, size=(fi, fo)).astype(np.float32)
                bias = rng.uniform(-bound, bound, size=(fo,)).astype(np.float32)
                wn, bn = f"b{b}.fc{j}.weight", f"b{b}.fc{j}.bias"
                add(wn, w)
                add(bn, bias)
                del w
                mm, ad, out = f"b{b}.mm{j}", f"b{b}.add{j}", f"b{b}.h{j}"
                nodes += [helper.make_node("MatMul", [cur, wn], [mm]),
                          helper.make_node("Add", [mm, bn], [ad]),
                          helper.make_node(act, [ad], [out])]
                cur = out
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, width])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "model.onnx"
    onnx.save(model, path)  # external_data already set: only the graph goes into model.onnx
    return path


def write_torch_zip(path: Path, scale: float) -> Path | None:
    """torch.save of a state dict of nn.Linear-initialised float32 tensors (~1 GB at scale 1)."""
    try:
        import torch
    except ImportError:
        return None
    torch.manual_seed(0)
    width, hidden, blocks = onnx_layers(scale)
    sd: dict = {}
    for b in range(blocks):
        for j, (fi, fo) in enumerate(((width, hidden), (hidden, width))):
            lin = torch.nn.Linear(fi, fo)  # torch's own default init
            sd[f"blocks.{b}.fc{j}.weight"] = lin.weight.detach()
            sd[f"blocks.{b}.fc{j}.bias"] = lin.bias.detach()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


# ----------------------------------------------------------------------------- measuring


@dataclass
class Run:
    tool: str
    seconds: float | None
    peak_rss: int | None  # bytes
    ok: bool
    note: str = ""
    cpu: float | None = None  # user + sys seconds of the child
    peak_anon: int | None = None  # bytes, RssAnon high-water mark (sampled)


# A tiny launcher measures the real child. Linux carries a process's peak RSS across fork+exec
# (exec records the old mm's high-water mark), so a child started straight from this script would
# report at least *this* process's peak (e.g. the torch generator's 1 GB): every tool would look
# as big as the benchmark itself. The launcher is a fresh, small interpreter; its child's
# ru_maxrss is the child's own peak (at least the launcher's ~10 MB). It also samples the child's
# RssAnon every 2 ms (Linux has no anonymous high-water mark).
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
anon = 0


def tree(p):
    # the child and its descendants (initaudit's forked workers): /proc/P/task/T/children
    out, todo = [], [p]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for t in os.listdir("/proc/%d/task" % q):
                with open("/proc/%d/task/%s/children" % (q, t)) as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def rss_anon(p):
    try:
        with open("/proc/%d/status" % p) as fh:
            for line in fh:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


while True:
    done, status, ru = os.wait4(pid, os.WNOHANG)
    if done:
        break
    anon = max(anon, sum(rss_anon(p) for p in tree(pid)))  # summed over the process tree
    time.sleep(0.002)
wall = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"wall": wall, "rss": ru.ru_maxrss * 1024, "cpu": ru.ru_utime + ru.ru_stime,
               "code": os.waitstatus_to_exitcode(status), "anon": anon}, fh)
"""


def measure(argv: list[str], timeout: float | None = None,
            env: dict | None = None) -> tuple[float, int, int, str, float, int]:
    """(wall s, peak RSS, exit code, last stderr line, CPU s, peak anonymous bytes) of one child."""
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile(suffix=".json") as res:
        proc = subprocess.Popen([sys.executable, "-S", "-c", LAUNCHER, res.name, *argv],
                                stdout=subprocess.DEVNULL, stderr=err, env=env,
                                start_new_session=True)
        try:
            proc.wait(timeout=timeout)
            killed = False
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)  # the launcher and the tool: their own session
            proc.wait()
            killed = True
        err.seek(0)
        lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
        last = lines[-1][:200] if lines else ""
        if killed:
            return float(timeout or 0), 0, -9, last, 0.0, 0
        try:
            with open(res.name) as fh:
                r = json.load(fh)
        except (OSError, ValueError):
            return 0.0, 0, proc.returncode or 1, last or "launcher failed", 0.0, 0
    return r["wall"], r["rss"], r["code"], last, r["cpu"], r["anon"]


# the floor: what any tool that looks at every byte must at least do (see the module docstring)
BARE_SAFETENSORS = r"""
import sys, json, glob, os, struct
import numpy as np
DT = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
n_el = 0
for shard in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    with open(shard, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
    mm = np.memmap(shard, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = mm[8 + n + a: 8 + n + b].view(DT[info["dtype"]]).reshape(info["shape"])
        m = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr.reshape(1, -1)
        if info["dtype"] == "BF16":
            # numpy has no bf16 arithmetic: widen by a shift, a block of rows at a time into one
            # reused buffer (a whole-tensor widening would cost a 4-byte copy of every tensor)
            per = max(1, (1 << 20) // m.shape[1])
            buf = np.empty((per, m.shape[1]), dtype=np.uint32)
            ones = np.ones(m.shape[1], dtype=np.float32)
            for s in range(0, m.shape[0], per):
                blk = m[s:s + per]
                w = buf[:blk.shape[0]]
                np.left_shift(blk, 16, out=w, dtype=np.uint32)
                ok = bool(np.isfinite(w.view(np.float32) @ ones).all())
        else:
            y = m @ np.ones(m.shape[1], dtype=m.dtype)
            ok = bool(np.isfinite(y).all())
        n_el += m.size
print(n_el, file=sys.stderr)
"""

# the floor's BLAS on one thread, like initaudit's (see the module docstring)
FLOOR_ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")

# safetensors' own loaders. float32: safetensors.numpy (the issue's reference); bfloat16:
# safetensors.numpy has no bfloat16, so the torch loader with backend="pread" (reads every byte;
# its default backend memory-maps lazily and reads nothing: shown as "lazy mmap")
REF_SAFETENSORS = r"""
import sys, glob, os
n = 0
for shard in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
    if sys.argv[2] == "numpy":
        from safetensors.numpy import load_file
        d = load_file(shard)
        n += sum(t.size for t in d.values())
    else:
        from safetensors.torch import load_file
        try:
            d = load_file(shard, backend=sys.argv[2])
        except TypeError:  # safetensors < 0.7 has no backend argument: it reads with mmap
            d = load_file(shard)
        n += sum(t.numel() for t in d.values())
    del d
print(n, file=sys.stderr)
"""

REF_ONNX = r"""
import sys, onnx
from onnx import numpy_helper
m = onnx.load(sys.argv[1])
n = 0
for t in m.graph.initializer:
    n += numpy_helper.to_array(t).size
print(n, file=sys.stderr)
"""

REF_TORCH = r"""
import sys, torch
sd = torch.load(sys.argv[1], weights_only=True)
print(sum(t.numel() for t in sd.values()), file=sys.stderr)
"""

PEER_WW = r"""
import sys, logging
logging.disable(logging.WARNING)
import weightwatcher as ww
w = ww.WeightWatcher(model=sys.argv[1])
details = w.analyze()
print(len(details), "layers analysed", file=sys.stderr)
"""


def audit_argv(path: Path | list[Path], *extra: str) -> list[str]:
    paths = [str(p) for p in (path if isinstance(path, list) else [path])]
    return [sys.executable, "-m", "initaudit", *paths, "--format", "json", "-o", os.devnull,
            "--exit-zero", *extra]


def run_tool(tool: str, argv: list[str], timeout: float | None = None,
             env: dict | None = None) -> Run:
    try:
        secs, rss, code, last, cpu, anon = measure(argv, timeout, env)
    except OSError as exc:
        return Run(tool, None, None, False, f"could not start ({exc})")
    if code == -9:
        return Run(tool, secs, None, False, f"timed out after {timeout:.0f} s (killed)", None)
    if code not in (0, 1):
        return Run(tool, secs, rss, False, f"exit {code}: {last}", cpu, anon)
    return Run(tool, secs, rss, True, last if not tool.startswith("initaudit") else "", cpu, anon)


def _files(path: Path) -> list[Path]:
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    if path.is_file() and path.suffix == ".onnx":
        files += [p for p in path.parent.iterdir() if p.is_file() and p != path]
    return files


def warm(path: Path) -> None:
    """Evict the files, then read every one once (``read()``), so all tools start from the same
    freshly read page cache. Not merely "read once": how the cached pages came to be there
    changes what mapping them costs. On this machine the floor took 0.37 s (0.28 s of it system
    time in page faults) on a file whose pages had sat in the cache for hours, 0.14-0.20 s (0.02 s
    system) once they were evicted and read back; a fresh page cache gives the fastest floor, so
    the strictest ratio."""
    evict(path)
    for f in _files(path):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def evict(path: Path) -> None:
    """Drop the files' pages from the page cache (cold start; needs no root, touches no other file)."""
    for f in _files(path):
        fd = os.open(f, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def cached_share(path: Path) -> float | None:
    """Share of the files' bytes resident in the page cache (util-linux ``fincore``), or None."""
    exe = shutil.which("fincore")
    if exe is None:
        return None
    files = _files(path)
    try:
        out = subprocess.run([exe, "--bytes", "--noheadings", "--raw", "--output", "RES,SIZE",
                              *map(str, files)], capture_output=True, text=True, check=True).stdout
        pairs = [tuple(map(int, ln.split())) for ln in out.splitlines() if ln.strip()]
    except (OSError, subprocess.CalledProcessError, ValueError):
        return None
    size = sum(sz for _, sz in pairs)
    return sum(res for res, _ in pairs) / size if size else None


def size_of(path: Path) -> int:
    return sum(f.stat().st_size for f in _files(path))


PYCACHE = Path(tempfile.gettempdir()) / "initaudit-perf-pycache"


def audit_env() -> dict:
    """The audit's environment: the worktree on the path and, like an installed package (pip
    compiles bytecode at install time), its bytecode cached, in a directory of its own
    (PYTHONPYCACHEPREFIX) so the tree stays clean; with PYTHONDONTWRITEBYTECODE=1 every run
    would compile initaudit's ~80 modules again (~0.04 CPU-s measured), which numpy, already
    installed, never pays."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


def peer_python(explicit: str | None) -> str | None:
    for cand in ([explicit] if explicit else []) + [sys.executable]:
        if cand and subprocess.run([cand, "-c", "import weightwatcher"], capture_output=True).returncode == 0:
            return cand
    return None


@dataclass
class Row:
    checkpoint: str
    size: int
    params: int
    runs: list[Run] = field(default_factory=list)


def _best_of(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.ok and r.seconds is not None]
    return min(ok, key=lambda r: r.seconds) if ok else runs[-1]  # type: ignore[arg-type, return-value]


def interleaved(tools: list[tuple[str, list[str], dict | None]], repeat: int,
                before: Callable[[], None] | None = None) -> list[Run]:
    """Best of ``repeat`` for each tool, the tools run in turn (A B C A B C ...) so that a change
    in the machine's load hits all of them alike; ``before`` runs before every single run."""
    got: dict[str, list[Run]] = {t: [] for t, _, _ in tools}
    for _ in range(max(1, repeat)):
        for tool, argv, env in tools:
            if before is not None:
                before()
            got[tool].append(run_tool(tool, argv, env=env))
    return [_best_of(got[t]) for t, _, _ in tools]


def bench_one(label: str, path: Path, params: int, refs: list[tuple[str, list[str]]],
              peer: str | None, peer_timeout: float, repeat: int, floor: bool = False,
              cold: bool = False) -> Row:
    """``refs``: (tool label, extra argv) reference loaders; the first is the ratio's reference."""
    row = Row(label, size_of(path), params)
    warm(path)
    tools: list[tuple[str, list[str], dict | None]] = [("initaudit", audit_argv(path), audit_env())]
    if floor:
        tools.append(("bare numpy pass", [sys.executable, "-c", BARE_SAFETENSORS, str(path)], FLOOR_ENV))
        tools.append(("bare numpy pass, OpenBLAS threads", [sys.executable, "-c", BARE_SAFETENSORS,
                                                            str(path)], None))
    for tool, argv in refs:
        tools.append((tool, [sys.executable, "-c", *argv[:1], str(path), *argv[1:]], None))
    row.runs.extend(interleaved(tools, repeat))
    if cold:
        cold_tools = [(f"{t} (cold cache)", a, e) for t, a, e in tools[:2]]
        shares: list[float] = []

        def cold_start() -> None:
            evict(path)
            share = cached_share(path)
            if share is not None:
                shares.append(share)

        runs = interleaved(cold_tools, max(1, repeat - 1), before=cold_start)
        for r in runs:
            r.note = (r.note + " " if r.note else "") + "files evicted before the run"
        row.runs.extend(runs)
        warm(path)
        if shares:
            for r in runs:
                r.note += f" (at most {max(shares):.0%} of the file still cached, fincore)"
    if peer is not None:
        row.runs.append(run_tool("weightwatcher", [peer, "-c", PEER_WW, str(path)], timeout=peer_timeout))
    print(f"  {label}: " + "; ".join(f"{r.tool} {_fmt_s(r.seconds)} {_fmt_b(r.peak_anon)}"
                                      + ("" if r.ok else f" [{r.note}]") for r in row.runs),
          flush=True)
    return row


# ----------------------------------------------------------------------------- report


def _fmt_s(s: float | None) -> str:
    return "-" if s is None else f"{s:.2f} s"


def _fmt_b(b: int | None) -> str:
    if b is None:
        return "-"
    return f"{b / GiB:.2f} GiB" if b >= GiB else f"{b / 2**20:.0f} MiB"


def machine() -> list[str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        kb = int(next(ln for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")).split()[1])
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    versions = [f"Python {platform.python_version()}", f"numpy {np.__version__}"]
    for mod in ("scipy", "safetensors", "onnx", "torch", "ml_dtypes"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001 - absent or broken: just not listed
            pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    blas = ", ".join(f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS_"))
    return [(f"CPU: {cpu}, {os.cpu_count()} cores; RAM {ram}; {platform.system()} {platform.release()}; "
             f"load average at the end of the run {load} (other jobs share the machine when > 0)"),
            "Versions: " + ", ".join(versions) + (f"; environment: {blas}" if blas else "")]


def table(rows: list[Row]) -> list[str]:
    out = ["| checkpoint | size | params | tool | wall time | CPU time | peak anon. memory "
           "| anon. / size | peak RSS (incl. mapped file) | time / floor | CPU / floor CPU | time / reference | note |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ref = next((r for r in row.runs if r.tool == "reference load" and r.ok), None)
        floor = next((r for r in row.runs if r.tool == "bare numpy pass" and r.ok), None)
        cold_floor = next((r for r in row.runs if r.tool == "bare numpy pass (cold cache)" and r.ok), None)
        for r in row.runs:
            fl = cold_floor if r.tool.endswith("(cold cache)") else floor
            ratio = (f"**{r.seconds / ref.seconds:.2f}**" if ref is not None and r.ok and r.seconds
                     and ref.seconds and r is not ref and not r.tool.endswith("(cold cache)") else "-")
            fratio = (f"**{r.seconds / fl.seconds:.2f}**" if fl is not None and r.ok and r.seconds
                      and fl.seconds and r is not fl else "-")
            cratio = (f"{r.cpu / fl.cpu:.2f}" if fl is not None and r.ok and r.cpu and fl.cpu
                      and r is not fl else "-")
            frac = f"{100 * r.peak_anon / row.size:.1f}%" if r.peak_anon else "-"
            cpu = "-" if r.cpu is None else f"{r.cpu:.2f} s"
            out.append(f"| {row.checkpoint} | {_fmt_b(row.size)} | {row.params / 1e6:.0f}M | {r.tool} | "
                       f"{_fmt_s(r.seconds)} | {cpu} | {_fmt_b(r.peak_anon)} | {frac} | "
                       f"{_fmt_b(r.peak_rss)} | {fratio} | {cratio} | {ratio} | {r.note.replace('|', '/')} |")
    return out


def linearity(points: list[tuple[str, int, int, float, float, float]]) -> list[str]:
    """points: (dtype, params, bytes, audit wall, audit CPU, floor wall)."""
    out = ["| dtype | params | size | audit wall time | audit CPU time | bare pass wall | audit / bare "
           "| audit CPU s per GB |",
           "|---|---|---|---|---|---|---|---|"]
    for dt, params, nbytes, secs, cpu, fl in points:
        out.append(f"| {dt} | {params / 1e6:.0f}M | {_fmt_b(nbytes)} | {secs:.2f} s | {cpu:.2f} s | "
                   f"{fl:.2f} s | **{secs / fl:.2f}** | {cpu / (nbytes / 1e9):.2f} |")
    if len(points) >= 2:
        # fitted on CPU time against bytes: wall time on a shared machine mostly measures the others
        x = np.array([b for _, _, b, _, _, _ in points], dtype=float)
        y = np.array([c for _, _, _, _, c, _ in points])
        slope, intercept = np.polyfit(x, y, 1)
        pred = slope * x + intercept
        r2 = 1 - float(np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
        out.append("")
        out.append(f"Least-squares line (audit CPU time against bytes, both dtypes): "
                   f"{slope * 1e9:.2f} s per GB + {intercept:.2f} s fixed; R² = {r2:.4f}.")
    return out


def write_readme(lines: list[str]) -> None:
    text = README.read_text() if README.exists() else ""
    block = "\n".join([MARK_BEGIN, *lines, MARK_END])
    if MARK_BEGIN in text and MARK_END in text:
        head, rest = text.split(MARK_BEGIN, 1)
        tail = rest.split(MARK_END, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
    README.write_text(text)


def write_tiny(folder: Path) -> Path:
    """A 1-tensor safetensors file: auditing it measures the start-up cost of an audit."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.safetensors"
    arr = np.random.default_rng(0).normal(0, 0.02, (16, 16)).astype("<f4")
    raw = json.dumps({"w.weight": {"dtype": "F32", "shape": [16, 16], "data_offsets": [0, arr.nbytes]}}).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little") + raw + arr.tobytes())
    return path


def startup(data: Path, repeat: int) -> list[str]:
    tiny = write_tiny(data / "tiny")
    version, empty, imp = interleaved(
        [("initaudit --version", [sys.executable, "-m", "initaudit", "--version"], audit_env()),
         ("empty audit", audit_argv(tiny), audit_env()),
         ("python + numpy import", [sys.executable, "-c", "import numpy"], None)], max(3, repeat))
    return ["| start-up | wall time | CPU time | peak anon. memory |", "|---|---|---|---|",
            *(f"| {r.tool} | {_fmt_s(r.seconds)} | {'-' if r.cpu is None else f'{r.cpu:.2f} s'} | "
              f"{_fmt_b(r.peak_anon)} |" for r in (version, empty, imp))]


THREADS = r"""
import sys
from initaudit.engine import AuditConfig, audit_path
report = audit_path(sys.argv[1], AuditConfig(workers=int(sys.argv[2])))
print(report.status.value, len(report.tensors), file=sys.stderr)
"""


def threads_rows(folder: Path, repeat: int) -> list[str]:
    """One file's tensors on one worker against the default (one per CPU, OpenBLAS pinned): forked
    processes for a local safetensors/GGUF file, threads for the other formats (engine.py)."""
    warm(folder)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    runs = interleaved([(f"{w} worker{'s' if w > 1 else ''}", [sys.executable, "-c", THREADS, str(folder), str(w)],
                         audit_env()) for w in sorted({1, max(1, min(8, cpus))})], repeat)
    return ["| checkpoint | workers | wall time | CPU time | peak anon. memory |", "|---|---|---|---|---|",
            *(f"| {folder.name} | {r.tool} | {_fmt_s(r.seconds)} | {'-' if r.cpu is None else f'{r.cpu:.2f} s'} "
              f"| {_fmt_b(r.peak_anon)} |" for r in runs)]


def jobs_rows(folder: Path, repeat: int) -> list[str]:
    """The shards of a sharded model as separate files: one process (-j 1) against two (-j 2)."""
    shards = sorted(folder.glob("*.safetensors"))
    if len(shards) < 2:
        return []
    warm(folder)
    one, two = interleaved([("-j 1", audit_argv(shards, "-j", "1"), audit_env()),
                            ("-j 2", audit_argv(shards, "-j", "2"), audit_env())], repeat)
    return ["| files | --jobs | wall time | CPU time | peak anon. memory (largest process) |",
            "|---|---|---|---|---|",
            *(f"| {len(shards)} shards of {folder.name} | {r.tool} | {_fmt_s(r.seconds)} | "
              f"{'-' if r.cpu is None else f'{r.cpu:.2f} s'} | {_fmt_b(r.peak_anon)} |" for r in (one, two))]


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="size factor of the bf16/ONNX/torch models "
                    "(1.0: ~1B params); the fp32 model is the issue's fixed 1.74 GB one unless --scale < 1")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    ap.add_argument("--repeat", type=int, default=3, help="runs per tool; the best is reported")
    ap.add_argument("--formats", default="fp32,safetensors,onnx,torch")
    ap.add_argument("--series", default="0.1,0.5,1,2,4", help="billions of parameters of the scaling series")
    ap.add_argument("--series-dtypes", default="bf16,fp32")
    ap.add_argument("--series-max-gb", type=float, default=4.3, help="cap on one series checkpoint (disk/time)")
    ap.add_argument("--no-series", action="store_true")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache runs")
    ap.add_argument("--no-peer", action="store_true", help="do not run weightwatcher")
    ap.add_argument("--peer-python", help="interpreter with weightwatcher installed")
    ap.add_argument("--peer-timeout", type=float, default=900.0)
    ap.add_argument("--no-readme", action="store_true", help="print the table, do not edit README")
    args = ap.parse_args(argv)

    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    data = args.data_dir
    need = 6.5 * GiB * min(args.scale, 1.0) + (args.series_max_gb * 1e9 if not args.no_series else 0)
    free = shutil.disk_usage(data.parent if not data.exists() else data).free
    if free < need * 1.1:
        print(f"not enough disk: need ~{need / GiB:.1f} GiB in {data}, {free / GiB:.1f} GiB free",
              file=sys.stderr)
        return 2
    peer = None if args.no_peer else peer_python(args.peer_python)
    rows: list[Row] = []
    points: list[tuple[str, int, int, float, float, float]] = []
    notes: list[str] = []
    created = not data.exists()
    data.mkdir(parents=True, exist_ok=True)
    extra: list[str] = []
    try:
        extra += ["", "Start-up (a 16×16 float32 safetensors file; best of "
                  f"{max(3, args.repeat)}):", "", *startup(data, args.repeat)]
        if "fp32" in formats:
            shape = FP32_LLAMA if args.scale >= 1 else LlamaShape.scaled(args.scale)
            params = sum(math.prod(s) for _, s, _ in shape.tensors())
            folder = data / f"llama-fp32-{params}"
            if not (folder / "model.safetensors.index.json").exists():
                print(f"writing {folder} ({params / 1e6:.0f}M params, fp32)...", flush=True)
                write_safetensors_sharded(folder, shape, shard_bytes=4 * 10**9, dtype="f32")
            rows.append(bench_one(f"safetensors fp32, 1 file, {len(shape.tensors())} tensors "
                                  f"(Llama, {shape.layers} layers)", folder, params,
                                  [("reference load", [REF_SAFETENSORS, "numpy"])],
                                  None, args.peer_timeout, args.repeat, floor=True,
                                  cold=not args.no_cold))
            extra += ["", "Tensors across workers (the engine's API, `AuditConfig(workers=N)`; the "
                      "CLI uses one per CPU; a local safetensors file's workers are forked "
                      "processes, CPU and memory summed over them):", "",
                      *threads_rows(folder, args.repeat)]
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        if "safetensors" in formats:
            shape = LlamaShape.scaled(args.scale)
            params = sum(math.prod(s) for _, s, _ in shape.tensors())
            folder = data / f"llama-bf16-{args.scale:g}"
            if not (folder / "model.safetensors.index.json").exists():
                print(f"writing {folder} ({params / 1e6:.0f}M params)...", flush=True)
                write_safetensors_sharded(folder, shape)
            rows.append(bench_one("safetensors bf16, sharded (HF Llama layout)", folder, params,
                                  [("reference load", [REF_SAFETENSORS, "pread"]),
                                   ("reference, lazy mmap", [REF_SAFETENSORS, "mmap"])],
                                  peer, args.peer_timeout, args.repeat, floor=True))
            extra += ["", "Files across processes (`--jobs`), the same shards audited as separate files:",
                      "", *jobs_rows(folder, max(1, args.repeat - 1))]
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        if not args.no_series:
            series = [float(x) for x in args.series.split(",") if x.strip()]
            for dt in [d.strip() for d in args.series_dtypes.split(",") if d.strip()]:
                item = 2 if dt == "bf16" else 4
                for billions in series:
                    shape = LlamaShape.scaled(billions * 1e9 / 1.056e9)
                    params = sum(math.prod(s) for _, s, _ in shape.tensors())
                    if params * item > args.series_max_gb * 1e9:
                        notes.append(f"{dt} {billions:g}B ({params * item / 1e9:.1f} GB) not run: "
                                     f"over --series-max-gb {args.series_max_gb:g} (disk and time on this machine)")
                        continue
                    with tempfile.TemporaryDirectory(dir=data) as tmp:
                        folder = Path(tmp) / f"llama-{dt}"
                        print(f"series: writing {dt} {params / 1e6:.0f}M...", flush=True)
                        write_safetensors_sharded(folder, shape, dtype="f32" if dt == "fp32" else "bf16")
                        nbytes = size_of(folder)
                        warm(folder)
                        audit, bare = interleaved(
                            [("initaudit", audit_argv(folder), audit_env()),
                             ("bare", [sys.executable, "-c", BARE_SAFETENSORS, str(folder)], FLOOR_ENV)],
                            max(1, args.repeat - 1))
                        if audit.ok and bare.ok and audit.seconds and bare.seconds and audit.cpu:
                            points.append((dt, params, nbytes, audit.seconds, audit.cpu, bare.seconds))
                            print(f"  {dt} {params / 1e6:.0f}M: audit {audit.seconds:.2f} s, "
                                  f"bare {bare.seconds:.2f} s", flush=True)
        if "onnx" in formats:
            width, hidden, blocks = onnx_layers(args.scale)
            params = blocks * 2 * (width * hidden + (width + hidden) // 2)
            folder = data / f"onnx-mlp-{args.scale:g}"
            path = folder / "model.onnx"
            if not path.exists():
                print(f"writing {path}...", flush=True)
                write_onnx_external(folder, args.scale)
            rows.append(bench_one("ONNX float32, external data", path, params,
                                  [("reference load", [REF_ONNX])], None,
                                  args.peer_timeout, args.repeat))
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
        if "torch" in formats:
            path = data / f"torch-{args.scale:g}" / "model.pt"
            if not path.exists():
                print(f"writing {path}...", flush=True)
                if write_torch_zip(path, args.scale) is None:
                    print("  torch is not installed: torch zip benchmark skipped", flush=True)
            if path.exists():
                width, hidden, blocks = onnx_layers(args.scale)
                params = blocks * 2 * (width * hidden + (width + hidden) // 2)
                rows.append(bench_one("torch zip (torch.save) float32", path, params,
                                      [("reference load", [REF_TORCH])],
                                      None, args.peer_timeout, args.repeat))
            if not args.keep:
                shutil.rmtree(path.parent, ignore_errors=True)
    finally:
        if created and not args.keep:
            shutil.rmtree(data, ignore_errors=True)

    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/perf.py"
             + (f" {' '.join(argv if argv is not None else sys.argv[1:])}" if (argv or sys.argv[1:]) else "")
             + "` (warm page cache unless marked cold; best of "
             f"{args.repeat}, initaudit and the floor interleaved).",
             "", *machine(), "", *table(rows), *extra]
    if points:
        lines += ["", "Audit time against size (Llama-shaped, sharded ≤500 MB, generated on demand):", "",
                  *linearity(points)]
    lines += ["", *(f"- {n}" for n in notes)] if notes else []
    if peer is None and not args.no_peer:
        lines += ["", "weightwatcher: not importable by this interpreter (pass --peer-python)."]
    print("\n".join(lines))
    if not args.no_readme:
        write_readme(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
