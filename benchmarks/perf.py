"""Speed and memory benchmark on large synthetic checkpoints, side by side with reference loaders.

One command makes the checkpoints, measures, and writes the table to benchmarks/README.md:

    python benchmarks/perf.py                 # ~1B-param bf16 safetensors (sharded), ~1 GB ONNX
                                              # with external data, ~1 GB torch zip (~10 min)
    python benchmarks/perf.py --scale 0.05    # smoke test (a minute)
    python benchmarks/perf.py --keep          # keep benchmarks/_data/ (gitignored) afterwards

For every checkpoint, each in its own subprocess (so each peak RSS is that process's own):

* ``initaudit``: the CLI, ``python -m initaudit PATH --format json -o /dev/null --exit-zero``;
* ``reference load``: the format's own library loading every tensor into numpy/torch:
  ``safetensors.torch.load_file`` per shard (``safetensors.numpy`` has no bfloat16),
  ``onnx.load`` (external data included) + ``numpy_helper.to_array`` per initializer,
  ``torch.load(weights_only=True)``;
* ``peer``: weightwatcher's ``analyze()`` where it is importable (``--peer-python`` names an
  interpreter that has it), with a timeout.

Wall time is measured around the subprocess, peak RSS is the child's ``ru_maxrss`` from
``os.wait4``. Files are read once before the runs, so every tool sees a warm page cache (we cannot
drop caches without root; cold-cache numbers are disk-bound for all tools alike).

Time against size: the safetensors model is also generated at 1/4 and 1/2 of the size and
audited, to show the audit time grows linearly.
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
    def scaled(cls, scale: float) -> "LlamaShape":
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
            for name, shp, init in shard:
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


# A tiny launcher measures the real child. Linux carries a process's peak RSS across fork+exec
# (exec records the old mm's high-water mark), so a child started straight from this script would
# report at least *this* process's peak (e.g. the torch generator's 1 GB): every tool would look
# as big as the benchmark itself. The launcher is a fresh, small interpreter; its child's
# ru_maxrss is the child's own peak (at least the launcher's ~10 MB).
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
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as fh:
    json.dump({"wall": wall, "rss": ru.ru_maxrss * 1024, "cpu": ru.ru_utime + ru.ru_stime,
               "code": os.waitstatus_to_exitcode(status)}, fh)
"""


def measure(argv: list[str], timeout: float | None = None,
            env: dict | None = None) -> tuple[float, int, int, str, float]:
    """(wall seconds, peak RSS bytes, exit code, last stderr line, CPU seconds) of one child."""
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
            return float(timeout or 0), 0, -9, last, 0.0
        try:
            with open(res.name) as fh:
                r = json.load(fh)
        except (OSError, ValueError):
            return 0.0, 0, proc.returncode or 1, last or "launcher failed", 0.0
    return r["wall"], r["rss"], r["code"], last, r["cpu"]


# safetensors.numpy has no bfloat16, so the torch loader is the reference. Its default backend
# memory-maps lazily and reads no tensor bytes at all (fast, but not a load); backend="pread"
# reads every tensor into memory: that is the reference the ratio is taken against.
REF_SAFETENSORS = r"""
import sys, glob, os
from safetensors.torch import load_file
n = 0
for shard in sorted(glob.glob(os.path.join(sys.argv[1], "*.safetensors"))):
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


def audit_argv(path: Path) -> list[str]:
    return [sys.executable, "-m", "initaudit", str(path), "--format", "json", "-o", os.devnull,
            "--exit-zero"]


def run_tool(tool: str, argv: list[str], timeout: float | None = None,
             env: dict | None = None) -> Run:
    try:
        secs, rss, code, last, cpu = measure(argv, timeout, env)
    except OSError as exc:
        return Run(tool, None, None, False, f"could not start ({exc})")
    if code == -9:
        return Run(tool, secs, None, False, f"timed out after {timeout:.0f} s (killed)", None)
    if code not in (0, 1):
        return Run(tool, secs, rss, False, f"exit {code}: {last}", cpu)
    return Run(tool, secs, rss, True, last if tool != "initaudit" else "", cpu)


def warm(path: Path) -> None:
    """Read every file once so all tools start from the same (warm) page cache."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())
    if path.is_file() and path.suffix == ".onnx":
        files += [p for p in path.parent.iterdir() if p.is_file() and p != path]
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass


def size_of(path: Path) -> int:
    if path.is_file() and path.suffix == ".onnx":
        return sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def audit_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
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


def _best(tool: str, argv: list[str], repeat: int, env: dict | None = None) -> Run:
    """The fastest of ``repeat`` successful runs (the machine may be shared: noise only adds)."""
    runs = [run_tool(tool, argv, env=env) for _ in range(max(1, repeat))]
    ok = [r for r in runs if r.ok and r.seconds is not None]
    return min(ok, key=lambda r: r.seconds) if ok else runs[-1]  # type: ignore[arg-type, return-value]


def bench_one(label: str, path: Path, params: int, refs: list[tuple[str, list[str]]],
              peer: str | None, peer_timeout: float, repeat: int) -> Row:
    """``refs``: (tool label, extra argv) reference loaders; the first is the ratio's reference."""
    row = Row(label, size_of(path), params)
    warm(path)
    row.runs.append(_best("initaudit", audit_argv(path), repeat, audit_env()))
    for tool, argv in refs:
        row.runs.append(_best(tool, [sys.executable, "-c", *argv[:1], str(path), *argv[1:]], repeat))
    if peer is not None:
        row.runs.append(run_tool("weightwatcher", [peer, "-c", PEER_WW, str(path)], timeout=peer_timeout))
    print(f"  {label}: " + "; ".join(f"{r.tool} {_fmt_s(r.seconds)} {_fmt_b(r.peak_rss)}"
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
    return [f"CPU: {cpu}, {os.cpu_count()} cores; RAM {ram}; {platform.system()} {platform.release()}; "
            f"load average at the end of the run {load} (other jobs share the machine when > 0)",
            "Versions: " + ", ".join(versions)]


def table(rows: list[Row]) -> list[str]:
    out = ["| checkpoint | size | params | tool | wall time | CPU time | peak RSS | RSS / size "
           "| time / reference | note |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ref = next((r for r in row.runs if r.tool == "reference load" and r.ok), None)
        for r in row.runs:
            ratio = (f"**{r.seconds / ref.seconds:.2f}**" if ref is not None and r.ok and r.seconds
                     and ref.seconds and r is not ref else "-")
            frac = f"{100 * r.peak_rss / row.size:.0f}%" if r.peak_rss else "-"
            cpu = "-" if r.cpu is None else f"{r.cpu:.1f} s"
            out.append(f"| {row.checkpoint} | {_fmt_b(row.size)} | {row.params / 1e6:.0f}M | {r.tool} | "
                       f"{_fmt_s(r.seconds)} | {cpu} | {_fmt_b(r.peak_rss)} | {frac} | {ratio} | "
                       f"{r.note.replace('|', '/')} |")
    return out


def linearity(points: list[tuple[int, float, float]]) -> list[str]:
    out = ["| params | audit wall time | audit CPU time | CPU seconds per billion params |",
           "|---|---|---|---|"]
    for params, secs, cpu in points:
        out.append(f"| {params / 1e6:.0f}M | {secs:.2f} s | {cpu:.2f} s | {cpu / (params / 1e9):.1f} |")
    if len(points) >= 2:
        # fitted on CPU time: wall time on a shared machine mostly measures the other jobs
        x = np.array([p for p, _, _ in points], dtype=float)
        y = np.array([c for _, _, c in points])
        slope, intercept = np.polyfit(x, y, 1)
        pred = slope * x + intercept
        r2 = 1 - float(np.sum((y - pred) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-12))
        out.append("")
        out.append(f"Least-squares line (CPU time): {slope * 1e9:.2f} s per billion params + "
                   f"{intercept:.2f} s fixed (start-up, imports); R² = {r2:.4f}.")
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


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=1.0, help="size factor (1.0: ~1B params / ~1 GB)")
    ap.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--keep", action="store_true", help="keep the generated checkpoints")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the best is reported")
    ap.add_argument("--formats", default="safetensors,onnx,torch")
    ap.add_argument("--no-linearity", action="store_true", help="skip the time-vs-size series")
    ap.add_argument("--no-peer", action="store_true", help="do not run weightwatcher")
    ap.add_argument("--peer-python", help="interpreter with weightwatcher installed")
    ap.add_argument("--peer-timeout", type=float, default=900.0)
    ap.add_argument("--no-readme", action="store_true", help="print the table, do not edit README")
    args = ap.parse_args(argv)

    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    data = args.data_dir
    need = 4.2 * GiB * args.scale * (1.75 if not args.no_linearity else 1.0)
    free = shutil.disk_usage(data.parent if not data.exists() else data).free
    if free < need * 1.1:
        print(f"not enough disk: need ~{need / GiB:.1f} GiB in {data}, {free / GiB:.1f} GiB free",
              file=sys.stderr)
        return 2
    peer = None if args.no_peer else peer_python(args.peer_python)
    rows: list[Row] = []
    points: list[tuple[int, float, float]] = []
    created = not data.exists()
    data.mkdir(parents=True, exist_ok=True)
    try:
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
                                  peer, args.peer_timeout, args.repeat))
            if not args.no_linearity:
                for frac in (0.25, 0.5):
                    small = LlamaShape.scaled(args.scale * frac)
                    sp = sum(math.prod(s) for _, s, _ in small.tensors())
                    sf = data / f"llama-bf16-{args.scale * frac:g}"
                    if not (sf / "model.safetensors.index.json").exists():
                        write_safetensors_sharded(sf, small)
                    warm(sf)
                    r = run_tool("initaudit", audit_argv(sf), env=audit_env())
                    if r.ok and r.seconds is not None and r.cpu is not None:
                        points.append((sp, r.seconds, r.cpu))
                    if not args.keep:
                        shutil.rmtree(sf, ignore_errors=True)
                main_audit = rows[-1].runs[0]
                if main_audit.ok and main_audit.seconds is not None and main_audit.cpu is not None:
                    points.append((params, main_audit.seconds, main_audit.cpu))
                points.sort()
            if not args.keep:
                shutil.rmtree(folder, ignore_errors=True)
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

    lines = [f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/perf.py"
             + (f" --scale {args.scale:g}" if args.scale != 1 else "") + "` (warm page cache).",
             "", *machine(), "", *table(rows)]
    if points:
        lines += ["", "Audit time against size (safetensors bf16, same layout, 3 sizes):", "",
                  *linearity(points)]
    if peer is None and not args.no_peer:
        lines += ["", "weightwatcher: not importable by this interpreter (pass --peer-python)."]
    print("\n".join(lines))
    if not args.no_readme:
        write_readme(lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
