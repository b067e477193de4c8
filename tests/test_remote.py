"""Remote checkpoints against real servers on loopback: moto's S3 server and an HTTP server
with byte-range support. Bytes fetched are measured on both sides (the report's counter and
the server's own count of body bytes sent)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fsspec")
pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "initaudit", *args], capture_output=True,
                          text=True, env=full, timeout=120, check=False)


def _comparable(file_report: dict) -> dict:
    """What must not depend on where the bytes came from."""
    return {k: file_report[k] for k in ("format", "status", "tensors", "findings", "skipped",
                                        "coverage", "state", "signal")}


# --------------------------------------------------------------------------- checkpoints


def _mlp_state_dict(seed: int = 0) -> dict:
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def _sharded(folder: Path) -> Path:
    """Shards + model.safetensors.index.json as huggingface_hub writes them."""
    pytest.importorskip("torch")
    hub = pytest.importorskip("huggingface_hub")
    folder.mkdir(parents=True, exist_ok=True)
    hub.save_torch_state_dict(_mlp_state_dict(), folder, max_shard_size="200KB")
    assert (folder / "model.safetensors.index.json").is_file()
    assert len(list(folder.glob("*.safetensors"))) >= 2
    return folder


def _onnx_external(folder: Path) -> Path:
    """An MLP written by onnx with its initializers in a side file (external data)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 128)) * np.sqrt(2 / 64)).astype(np.float32)
    w2 = (rng.standard_normal((128, 10)) * np.sqrt(1 / 128)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["a"]),
         helper.make_node("MatMul", ["a", "w2"], ["y"])], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    assert (folder / "model.onnx.data").stat().st_size >= w1.nbytes + w2.nbytes
    return folder / "model.onnx"


def _big_safetensors(path: Path, mib: int = 128) -> Path:
    """~``mib`` MiB of He-normal kernels, generated on demand (the --sample-only ratio)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(1)
    rows, cols = 2048, 2048  # 16 MiB per float32 tensor
    tensors = {}
    for i in range(mib // 16):
        tensors[f"layers.{i}.weight"] = (rng.standard_normal((rows, cols), dtype=np.float32)
                                         * np.float32(np.sqrt(2 / cols)))
        tensors[f"layers.{i}.bias"] = np.zeros(rows, dtype=np.float32)
    save_file(tensors, str(path))
    return path


# --------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """moto's S3 API server on loopback, with a bucket holding a sharded model and an ONNX
    model with external data; yields the environment the client needs."""
    pytest.importorskip("moto")
    s3fs = pytest.importorskip("s3fs")
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret-never-printed",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "INITAUDIT_REMOTE_TIMEOUT": "10"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir("models")
        root = tmp_path_factory.mktemp("s3src")
        sharded = _sharded(root / "sharded")
        for f in sorted(sharded.iterdir()):
            fs.put(str(f), f"models/run1/sharded/{f.name}")
        onnx_path = _onnx_external(root / "onnx")
        for f in sorted(onnx_path.parent.iterdir()):
            fs.put(str(f), f"models/run1/onnx/{f.name}")
        yield {**env, "_sharded": str(sharded), "_onnx": str(onnx_path)}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _RangeHandler(BaseHTTPRequestHandler):
    """GET/HEAD with single byte ranges (206), plus the failure modes the tests need."""

    root: Path
    sent: dict[str, int]
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _file(self) -> Path | None:
        p = self.root / self.path.lstrip("/").split("?")[0].replace("truncated/", "")
        return p if p.is_file() else None

    def do_HEAD(self) -> None:
        if self._special():
            return
        f = self._file()
        if f is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(f.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()

    def _special(self) -> bool:
        if self.path.startswith("/forbidden"):
            self.send_error(403)
            return True
        if self.path.startswith("/slow"):
            time.sleep(3)
            self.send_error(404)
            return True
        return False

    def do_GET(self) -> None:
        if self._special():
            return
        f = self._file()
        if f is None:
            self.send_error(404)
            return
        size = f.stat().st_size
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start, end = int(a), min(int(b) if b else size - 1, size - 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        else:
            self.send_response(200)
        length = end - start + 1
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        with open(f, "rb") as fh:
            fh.seek(start)
            body = fh.read(length)
        if self.path.startswith("/truncated/") and length > 8 and start > 0:
            body = body[: length // 2]  # the connection closes mid-body
            self.close_connection = True
        self.wfile.write(body)
        with self.lock:
            self.sent[self.path] = self.sent.get(self.path, 0) + len(body)
            ranges = getattr(self.sent, "ranges", None)
            if ranges is not None:  # every byte range served, to prove none is asked twice
                ranges.setdefault(self.path, []).append((start, start + len(body)))


class SentLog(dict):
    """Body bytes sent per path, and the byte ranges served (``ranges``)."""

    def __init__(self) -> None:
        super().__init__()
        self.ranges: dict[str, list[tuple[int, int]]] = {}

    def clear(self) -> None:
        super().clear()
        self.ranges.clear()


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, int]]]:
    pytest.importorskip("aiohttp")
    root = tmp_path_factory.mktemp("http")
    sent = SentLog()
    handler = type("H", (_RangeHandler,), {"root": root, "sent": sent})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root, sent
    finally:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- S3


def test_s3_sharded_safetensors_same_report_each_byte_once(s3: dict[str, str]) -> None:
    local = _run(s3["_sharded"], "--format", "json", "--exit-zero", "--allow-partial")
    remote = _run("s3://models/run1/sharded/", "--format", "json", "--exit-zero", "--allow-partial")
    assert remote.returncode == local.returncode == 0, remote.stderr
    lf = json.loads(local.stdout)["files"][0]
    rf = json.loads(remote.stdout)["files"][0]
    assert rf["path"] == "s3://models/run1/sharded/"
    assert _comparable(rf) == _comparable(lf)
    assert rf["coverage"]["complete"] and rf["tensors"]
    folder = Path(s3["_sharded"])
    shard_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    index_bytes = (folder / "model.safetensors.index.json").stat().st_size
    # every shard byte fetched exactly once (8-byte length, header, each tensor's range), the
    # index whole; nothing else
    assert rf["remote"]["mode"] == "ranged"
    assert rf["remote"]["bytes_fetched"] == shard_bytes + index_bytes == rf["remote"]["bytes_total"]
    assert "secret" not in remote.stdout + remote.stderr
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "initaudit" / "schema" / "report.schema.json").read_text())
    jsonschema.validate(json.loads(remote.stdout), schema)


def test_s3_bucket_prefix_lists_models(s3: dict[str, str]) -> None:
    out = _run("s3://models/run1/", "--format", "json", "--exit-zero", "--allow-partial")
    assert out.returncode == 0, out.stderr
    paths = [f["path"] for f in json.loads(out.stdout)["files"]]
    assert paths == ["s3://models/run1/onnx/model.onnx", "s3://models/run1/sharded"]


def test_s3_onnx_external_data_read_by_ranges(s3: dict[str, str]) -> None:
    onnx_path = Path(s3["_onnx"])
    local = _run(str(onnx_path), "--format", "json", "--exit-zero")
    remote = _run("s3://models/run1/onnx/model.onnx", "--format", "json", "--exit-zero")
    assert remote.returncode == local.returncode, remote.stderr
    lf, rf = json.loads(local.stdout)["files"][0], json.loads(remote.stdout)["files"][0]
    assert _comparable(rf) == _comparable(lf)
    assert [t["name"] for t in rf["tensors"] if t["stats"]] == ["w1", "w2"]
    data_file = (onnx_path.parent / "model.onnx.data").stat().st_size
    total = onnx_path.stat().st_size + data_file
    tensor_bytes = (64 * 128 + 128 * 10) * 4
    # the graph whole (1 request), then one ranged request per external tensor: each data
    # byte once (alignment padding between tensors, if the writer adds any, never fetched)
    assert rf["remote"] == {"bytes_fetched": onnx_path.stat().st_size + tensor_bytes,
                            "bytes_total": total, "requests": 3, "mode": "ranged",
                            "sample_only": False}


def test_s3_onnx_missing_external_data_same_as_local(s3: dict[str, str], tmp_path: Path) -> None:
    import shutil

    import s3fs

    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(s3["_onnx"], alone / "model.onnx")
    s3fs.S3FileSystem(skip_instance_cache=True).put(s3["_onnx"], "models/nodata/model.onnx")
    local = _run(str(alone / "model.onnx"), "--format", "json")
    remote = _run("s3://models/nodata/model.onnx", "--format", "json")
    assert remote.returncode == local.returncode != 0
    lf, rf = json.loads(local.stdout)["files"][0], json.loads(remote.stdout)["files"][0]
    assert rf["status"] != "ok" and rf["skipped"] == lf["skipped"] and rf["skipped"]
    assert "does not exist" in rf["skipped"][0]["reason"]


def test_download_fallback_is_capped(s3: dict[str, str]) -> None:
    out = _run("s3://models/run1/onnx/model.onnx", env={"INITAUDIT_REMOTE_MAX_DOWNLOAD": "100"})
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "INITAUDIT_REMOTE_MAX_DOWNLOAD" in lines[0], out.stderr


def test_s3_missing_object_and_bucket_are_one_line_exit_2(s3: dict[str, str]) -> None:
    for url in ("s3://models/run1/nothere.safetensors", "s3://no-such-bucket/x.safetensors"):
        out = _run(url)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and url in lines[0] and "not found" in lines[0], out.stderr
        assert "Traceback" not in out.stderr


def test_s3_cache_keyed_by_etag(s3: dict[str, str], tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A re-run over the bucket fetches nothing of an unchanged model; a rewritten object (new
    ETag) is audited again."""
    import s3fs

    from initaudit import engine
    from initaudit.engine import AuditConfig
    from initaudit.runner import audit_all

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put(str(Path(s3["_onnx"]).parent / "model.onnx.data"), "models/cache/model.onnx.data")
    fs.put(s3["_onnx"], "models/cache/model.onnx")
    calls: list[str] = []
    real = engine.audit_path
    monkeypatch.setattr(engine, "audit_path", lambda p, c: (calls.append(p), real(p, c))[1])
    urls = ["s3://models/run1/sharded/", "s3://models/cache/model.onnx"]
    config = AuditConfig(workers=1, cache_dir=str(tmp_path))
    first = audit_all(urls, config, jobs=1)
    assert calls == urls and all(r.remote and r.remote["bytes_fetched"] for r in first)
    calls.clear()
    second = audit_all(urls, config, jobs=1)
    assert calls == []
    assert [r.to_dict()["tensors"] for r in second] == [r.to_dict()["tensors"] for r in first]
    fs.put(str(Path(s3["_sharded"]) / "model.safetensors.index.json"), "models/cache/model.onnx")
    audit_all(urls, config, jobs=1)  # the ONNX object was overwritten: new ETag
    assert calls == ["s3://models/cache/model.onnx"]


# --------------------------------------------------------------------------- HTTP


def test_http_full_read_fetches_each_byte_once(http: tuple[str, Path, dict[str, int]]) -> None:
    pytest.importorskip("torch")
    base, root, sent = http
    from safetensors.torch import save_file

    save_file(_mlp_state_dict(3), str(root / "mlp.safetensors"))
    size = (root / "mlp.safetensors").stat().st_size
    sent.clear()
    out = _run(f"{base}/mlp.safetensors", "--format", "json", "--exit-zero")
    assert out.returncode == 0, out.stderr
    rf = json.loads(out.stdout)["files"][0]
    local = json.loads(_run(str(root / "mlp.safetensors"), "--format", "json", "--exit-zero").stdout)
    assert _comparable(rf) == _comparable(local["files"][0])
    assert rf["remote"]["bytes_fetched"] == size
    assert sent.get("/mlp.safetensors") == size  # the server agrees: no byte sent twice


def test_http_sample_only_reads_under_5_percent(http: tuple[str, Path, dict[str, int]],
                                                tmp_path: Path) -> None:
    base, root, sent = http
    big = _big_safetensors(root / "big.safetensors", mib=128)
    size = big.stat().st_size
    sent.clear()
    out = _run(f"{base}/big.safetensors", "--sample-only", "--format", "json", "--exit-zero")
    assert out.returncode == 0, out.stderr
    rf = json.loads(out.stdout)["files"][0]
    fetched = rf["remote"]["bytes_fetched"]
    assert fetched == sent["/big.safetensors"]
    assert fetched < 0.05 * size, (fetched, size)
    assert rf["remote"]["sample_only"] is True
    assert any("not applied" in n and "dead-units" in n for n in rf["notes"])
    kernels = [t for t in rf["tensors"] if t["name"].endswith(".weight")]
    assert len(kernels) == 8
    for t in kernels:  # identified from the sample, size is the tensor's
        assert t["stats"]["sampled"] and t["stats"]["size"] == 2048 * 2048
        assert t["stats"]["n"] <= 1 << 16
        assert abs(t["stats"]["std"] - np.sqrt(2 / 2048)) < 0.02 * np.sqrt(2 / 2048)
        assert t["scheme"]["rule"] == "he" and t["scheme"]["distribution"] == "normal"


@pytest.mark.parametrize(("path", "words"), [
    ("/missing.safetensors", "not found (404)"),
    ("/forbidden/model.safetensors", "access denied (403)"),
    ("/slow/model.safetensors", "timed out after 1 s"),
    ("/truncated/mlp.safetensors", "truncated"),
])
def test_http_errors_one_line_exit_2(http: tuple[str, Path, dict[str, int]], path: str,
                                     words: str) -> None:
    pytest.importorskip("torch")
    base, root, _ = http
    if not (root / "mlp.safetensors").exists():
        from safetensors.torch import save_file

        save_file(_mlp_state_dict(3), str(root / "mlp.safetensors"))
    t0 = time.monotonic()
    out = _run(f"{base}{path}", env={"INITAUDIT_REMOTE_TIMEOUT": "1", "INITAUDIT_REMOTE_RETRIES": "2"})
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert f"{base}{path}" in lines[0] and words in lines[0], lines[0]
    assert time.monotonic() - t0 < 30


def test_sample_ranges_stay_inside_and_spread() -> None:
    from initaudit.remote import SAMPLE_ELEMENTS, sample_ranges

    ranges, shape = sample_ranges((4096, 1024), 4, seed=0)
    assert shape[1:] == (1024,) and shape[0] * 1024 <= SAMPLE_ELEMENTS
    assert sum(n for _, n in ranges) == shape[0] * 1024 * 4
    assert all(0 <= off and off + n <= 4096 * 1024 * 4 for off, n in ranges)
    starts = sorted(off for off, _ in ranges)
    assert starts[-1] > 4096 * 1024 * 4 // 2  # not all at the start of the tensor
    flat, fshape = sample_ranges((10_000_000,), 2, seed=0)
    assert fshape[0] <= SAMPLE_ELEMENTS and all(off + n <= 20_000_000 for off, n in flat)


def test_network_error_text_is_redacted() -> None:
    from initaudit.remote import RemoteSettings, describe

    line = describe(ValueError("GET https://bob:hunter2@host/m?token=abc123 Authorization: Bearer "
                               "sk-999\nsecond line"), RemoteSettings())
    assert "\n" not in line and line.startswith("request failed (ValueError: ")
    for secret in ("hunter2", "abc123", "sk-999", "Bearer", "second line"):
        assert secret not in line
