"""Bytes fetched auditing a large checkpoint in an S3 bucket, full and ``--sample-only``.

    python benchmarks/remote.py                          # 1 GiB, safetensors + torch zip + GGUF
    python benchmarks/remote.py --server http            # a loopback HTTP server with ranges
    python benchmarks/remote.py --mib 256 --formats gguf --json out.json

A checkpoint of ``--mib`` MiB (4096 x 1024 He-normal float32 kernels, 16 MiB each, and their
biases) is written at run time by the format's own writer (safetensors is streamed to disk; the
torch and GGUF writers hold the tensors in memory: ~1x the size in RAM), uploaded to moto's S3
server started on loopback (``--server http``: a loopback HTTP server with byte ranges,
instead: moto reads the whole object for every ranged GET, ~2 s per request for 1 GiB on a
busy 2-core machine), and audited through ``initaudit.engine.audit_path`` twice: a full
read and ``--sample-only``. Reported per run: bytes fetched (the report's counter), requests,
the share of the file, wall time and the schemes identified. On loopback the wall time is the
analysis, not the network: the byte and request counts are what carry over to a real store.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

ROWS, COLS = 4096, 1024  # 16 MiB per float32 kernel
FORMATS = ("safetensors", "torch", "gguf")
SUFFIX = {"safetensors": ".safetensors", "torch": ".pt", "gguf": ".gguf"}
# moto's server answered CompleteMultipartUpload of a 1 GiB object in 50 MiB parts (s3fs's
# default) with a 500; 256 MiB parts went through (on a busy machine, not always). A single
# PutObject of 1 GiB made moto grow to 7.3 GB and be OOM-killed: not an option.
UPLOAD_PART = 256 * 2**20


def _kernels(mib: int) -> Iterator[tuple[str, np.ndarray]]:
    n = max(1, mib // 16)
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        w = rng.standard_normal((ROWS, COLS), dtype=np.float32) * np.float32(np.sqrt(2 / COLS))
        yield f"layers.{i}.weight", w


def make_checkpoint(path: Path, fmt: str, mib: int) -> Path:
    """A checkpoint of ~``mib`` MiB written by the format's own writer."""
    if fmt == "safetensors":
        # the header as safetensors writes it, then each tensor streamed: 1 GiB never in memory
        n = max(1, mib // 16)
        header: dict[str, Any] = {}
        offset = 0
        for i in range(n):
            for name, shape in ((f"layers.{i}.weight", [ROWS, COLS]), (f"layers.{i}.bias", [ROWS])):
                nbytes = int(np.prod(shape)) * 4
                header[name] = {
                    "dtype": "F32",
                    "shape": shape,
                    "data_offsets": [offset, offset + nbytes],
                }
                offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path, "wb") as fh:
            fh.write(len(raw).to_bytes(8, "little") + raw)
            for _, w in _kernels(mib):
                fh.write(w.tobytes())
                fh.write(np.zeros(ROWS, np.float32).tobytes())
        from safetensors.numpy import load_file  # the real reader accepts it

        assert set(load_file(str(path))) == set(header)
        return path
    if fmt == "torch":
        import torch

        sd: dict[str, Any] = {}
        for name, w in _kernels(mib):
            sd[name] = torch.from_numpy(w)
            sd[name.replace("weight", "bias")] = torch.zeros(ROWS)
        torch.save(sd, path)
        return path
    if fmt == "gguf":
        import gguf

        writer = gguf.GGUFWriter(str(path), "llama")
        for name, w in _kernels(mib):
            writer.add_tensor(name, w)
            writer.add_tensor(name.replace("weight", "bias"), np.zeros(ROWS, np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path
    raise ValueError(fmt)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """moto's S3 server on loopback; sets (and restores) the AWS environment for it."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret-never-printed",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def http_server(root: Path) -> Iterator[str]:
    """A loopback HTTP server for ``root`` with single byte ranges (206), HEAD and GET."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _file(self) -> Path | None:
            p = root / self.path.lstrip("/").split("?")[0]
            return p if p.is_file() else None

        def do_HEAD(self) -> None:
            f = self._file()
            if f is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(f.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:
            f = self._file()
            if f is None:
                self.send_error(404)
                return
            size = f.stat().st_size
            start, end = 0, size - 1
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes="):
                a, _, b = rng[6:].partition("-")
                start, end = int(a), min(int(b) if b else size - 1, size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            with open(f, "rb") as fh:
                fh.seek(start)
                self.wfile.write(fh.read(end - start + 1))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def measure(url: str, *, sample_only: bool) -> dict[str, Any]:
    from initaudit.engine import AuditConfig, audit_path

    t0 = time.perf_counter()
    report = audit_path(url, AuditConfig(sample_only=sample_only))
    wall = time.perf_counter() - t0
    remote = dict(report.remote or {})
    schemes: dict[str, int] = {}
    for t in report.tensors:
        if t.scheme is not None:
            d = t.scheme.to_dict()
            key = f"{d.get('rule')}/{d.get('distribution')}"
            schemes[key] = schemes.get(key, 0) + 1
    return {
        "status": report.status.value,
        "error": report.error,
        "bytes_fetched": remote.get("bytes_fetched"),
        "bytes_total": remote.get("bytes_total"),
        "share": (remote.get("bytes_fetched") or 0) / (remote.get("bytes_total") or 1),
        "requests": remote.get("requests"),
        "mode": remote.get("mode"),
        "wall_s": round(wall, 2),
        "schemes": schemes,
        "not_applied": [n for n in report.notes if "not applied" in n],
    }


def run(mib: int, formats: tuple[str, ...], server: str = "s3") -> list[dict[str, Any]]:
    rows = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="initaudit-bench-")))
        if server == "s3":
            import s3fs

            stack.enter_context(moto_s3())
            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            fs.mkdir("bench")
        else:
            base = stack.enter_context(http_server(tmp))
        for fmt in formats:
            path = make_checkpoint(Path(tmp) / f"model{SUFFIX[fmt]}", fmt, mib)
            size = path.stat().st_size
            t0 = time.perf_counter()
            if server == "s3":
                fs.put(str(path), f"bench/{path.name}", chunksize=UPLOAD_PART)
                path.unlink()
                url = f"s3://bench/{path.name}"
            else:
                url = f"{base}/{path.name}"
            upload = time.perf_counter() - t0
            for sample_only in (False, True):
                row = measure(url, sample_only=sample_only)
                row.update(
                    format=fmt,
                    server=server,
                    size=size,
                    sample_only=sample_only,
                    upload_s=round(upload, 1),
                )
                rows.append(row)
                if row["status"] == "error":
                    print(f"{fmt:12s} error: {row['error']}", flush=True)
                    continue
                print(
                    f"{server:4s} {fmt:12s} {'sample' if sample_only else 'full':6s} "
                    f"{row['bytes_fetched']:>14,} of {size:>14,} B ({row['share']:.2%}) "
                    f"{row['requests']:>5} requests {row['wall_s']:>7.2f} s {row['status']} "
                    f"{row['schemes']}",
                    flush=True,
                )
            if server == "s3":
                fs.rm(f"bench/{path.name}")
            else:
                path.unlink()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=1024)
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--server", choices=("s3", "http"), default="s3")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = run(args.mib, tuple(f for f in args.formats.split(",") if f), args.server)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
