"""Remote torch zip, GGUF and ONNX external data read by ranged requests (their own loaders over
a ByteSource), full and --sample-only, against the loopback servers of test_remote.py: the
report equals the local one, no byte range is served twice, the pickles are scanned as
strictly as locally, and --sample-only reads under 5 % of a file."""

# ruff: noqa: F811 -- the servers are test_remote.py's fixtures, imported by name

from __future__ import annotations

import contextlib
import http.client as http_client
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from tests.test_remote import (  # noqa: F401 -- fixtures used by name
    SentLog,
    _comparable,
    _mlp_state_dict,
    _onnx_external,
    _run,
    http,
    s3,
)

pytest.importorskip("fsspec")
pytestmark = pytest.mark.e2e

HTTP = tuple[str, Path, SentLog]


def _disjoint(ranges: list[tuple[int, int]]) -> bool:
    spans = sorted(ranges)
    return all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


# --------------------------------------------------------------------------- checkpoints


def _torch_zip(path: Path, *, tied: bool = True) -> Path:
    """torch.save of an MLP's state_dict, with a tied entry (a second name for one storage)."""
    torch = pytest.importorskip("torch")
    sd = _mlp_state_dict(5)
    if tied:
        sd["head.weight"] = sd["4.weight"]  # the same tensor object: one storage in the zip
    torch.save(sd, path)
    return path


def _gguf(path: Path) -> Path:
    """A llama-like GGUF written by the gguf package (llama.cpp's writer): F32, F16 and Q8_0."""
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(2)
    Q = gguf.GGMLQuantizationType
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", rng.standard_normal((64, 128)).astype(np.float32))
    w.add_tensor("blk.0.ffn_up.weight",
                 (rng.standard_normal((256, 128)) * np.sqrt(1 / 128)).astype(np.float16),
                 raw_dtype=Q.F16)
    w.add_tensor("blk.0.ffn_gate.weight", gguf.quants.quantize(
        (rng.standard_normal((256, 128)) * np.sqrt(1 / 128)).astype(np.float32), Q.Q8_0),
        raw_dtype=Q.Q8_0)
    w.add_tensor("blk.0.ffn_down.weight",
                 (rng.standard_normal((128, 256)) * np.sqrt(1 / 256)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _big_torch(path: Path, n: int = 2, rows: int = 2048, cols: int = 2048) -> Path:
    """n He-normal float32 kernels of rows x cols (16 MiB each by default) and their biases."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(3)
    sd = {}
    for i in range(n):
        sd[f"layers.{i}.weight"] = torch.randn(rows, cols, generator=g) * (2 / cols) ** 0.5
        sd[f"layers.{i}.bias"] = torch.zeros(rows)
    torch.save(sd, path)
    return path


def _big_gguf(path: Path, n: int = 2, rows: int = 2048, cols: int = 2048) -> Path:
    """n kernels (F32, then Q8_0 for the odd ones), LeCun normal."""
    gguf = pytest.importorskip("gguf")
    Q = gguf.GGMLQuantizationType
    rng = np.random.default_rng(4)
    w = gguf.GGUFWriter(str(path), "gpt2")
    for i in range(n):
        data = (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(np.sqrt(1 / cols)))
        if i % 2:
            w.add_tensor(f"blk.{i}.attn_q.weight", gguf.quants.quantize(data, Q.Q8_0),
                         raw_dtype=Q.Q8_0)
        else:
            w.add_tensor(f"blk.{i}.attn_q.weight", data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def _audit(target: str, *, sample_only: bool = False) -> dict:
    """One file's report as the JSON reporter writes it (in-process: the CLI's own mapping of
    reports to exit codes and one-line errors is tested in test_remote.py and below)."""
    from initaudit.engine import AuditConfig, audit_path
    from initaudit.report import Report

    report = audit_path(target, AuditConfig(workers=2, sample_only=sample_only))
    assert report.status.value != "error", report.error
    return Report(files=[report]).to_dict()["files"][0]


# --------------------------------------------------------------------------- full reads


@pytest.mark.parametrize("kind", ["torch", "gguf"])
def test_http_ranged_read_same_report_no_byte_twice(http: HTTP, kind: str) -> None:
    base, root, sent = http
    name = f"model.{'pt' if kind == 'torch' else 'gguf'}"
    path = _torch_zip(root / name) if kind == "torch" else _gguf(root / name)
    size = path.stat().st_size
    local = _audit(str(path))
    sent.clear()
    remote = _audit(f"{base}/{name}")
    assert _comparable(remote) == _comparable(local)
    assert remote["coverage"]["complete"] and len(remote["tensors"]) >= 4
    assert remote["remote"]["mode"] == "ranged"
    fetched = remote["remote"]["bytes_fetched"]
    assert fetched == sent[f"/{name}"]  # the server agrees on the count
    # ranged, never a byte twice (the tied storage of the torch file included), and nothing
    # but zip padding / data descriptors / GGUF alignment left out
    ranges = sent.ranges[f"/{name}"]
    assert _disjoint(ranges), sorted(ranges)
    assert len(ranges) == remote["remote"]["requests"] >= 3
    tensor_bytes = sum(t["stats"]["size"] for t in remote["tensors"] if t["stats"])
    assert size - 4096 < fetched <= size and fetched > tensor_bytes // 2


def test_s3_torch_zip_and_gguf_same_report(s3: dict[str, str], tmp_path: Path) -> None:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    files = {"model.pt": _torch_zip(tmp_path / "model.pt"), "model.gguf": _gguf(tmp_path / "model.gguf")}
    for name, path in files.items():
        fs.put(str(path), f"models/formats/{name}")
    for name, path in files.items():
        local, remote = _audit(str(path)), _audit(f"s3://models/formats/{name}")
        assert _comparable(remote) == _comparable(local)
        assert remote["remote"]["mode"] == "ranged"
        assert remote["remote"]["bytes_total"] == path.stat().st_size
        assert 0 < remote["remote"]["bytes_fetched"] <= path.stat().st_size
        assert "secret" not in json.dumps(remote)


def test_http_torch_zip_pickle_scanned_as_strictly_as_locally(http: HTTP, tmp_path: Path) -> None:
    """A torch.save pickle that calls os.system: the remote audit reports exactly what the
    local one does (and runs nothing)."""
    torch = pytest.importorskip("torch")
    base, root, _ = http
    sentinel = tmp_path / "ran"

    class Payload:
        def __reduce__(self):  # noqa: ANN204 -- what pickle calls on load
            return (os.system, (f"touch {sentinel}",))

    torch.save({"w": torch.randn(8, 8), "evil": Payload()}, root / "evil.pt")
    local = _run(str(root / "evil.pt"), "--format", "json")
    remote = _run(f"{base}/evil.pt", "--format", "json")
    assert remote.returncode == local.returncode != 0
    lf, rf = json.loads(local.stdout)["files"][0], json.loads(remote.stdout)["files"][0]
    assert any(f["name"] == "unsafe-content" and "posix.system" in f["message"]
               for f in rf["findings"])
    assert rf["findings"] == lf["findings"]
    assert rf["status"] == lf["status"]
    assert not sentinel.exists()


def test_http_torch_zip_second_pickle_member_scanned(http: HTTP) -> None:
    """Every pickle member is scanned, not only data.pkl: one appended to a real torch.save
    archive is reported remotely as locally."""
    import zipfile

    base, root, _ = http
    path = _torch_zip(root / "extra.pt", tied=False)
    with zipfile.ZipFile(path, "a") as zf:
        top = zf.namelist()[0].split("/")[0]
        zf.writestr(f"{top}/extra.pkl", b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01"
                                        b"\x85q\x02Rq\x03.")
    local = _run(str(path), "--format", "json")
    remote = _run(f"{base}/extra.pt", "--format", "json")
    lf, rf = json.loads(local.stdout)["files"][0], json.loads(remote.stdout)["files"][0]
    assert remote.returncode == local.returncode != 0
    assert rf["findings"] == lf["findings"]
    assert any("posix.system" in f["message"] for f in rf["findings"])


def test_http_other_zip_downloaded_whole_without_refetching_its_probe(http: HTTP) -> None:
    """An npz (a zip, not a torch archive): detection fetched its head and central directory;
    the download that follows takes them from there -- each byte of the file exactly once."""
    base, root, sent = http
    rng = np.random.default_rng(8)
    np.savez(root / "weights.npz", dense=rng.standard_normal((256, 128)).astype(np.float32))
    size = (root / "weights.npz").stat().st_size
    local = _audit(str(root / "weights.npz"))
    sent.clear()
    remote = _audit(f"{base}/weights.npz")
    assert _comparable(remote) == _comparable(local)
    assert remote["remote"]["mode"] == "download"
    assert remote["remote"]["bytes_fetched"] == size == sent["/weights.npz"]
    assert _disjoint(sent.ranges["/weights.npz"])


# --------------------------------------------------------------------------- --sample-only


def _assert_sampled(rf: dict, size: int, kernels: int) -> None:
    assert rf["remote"]["sample_only"] is True
    assert rf["remote"]["bytes_fetched"] < 0.05 * size, (rf["remote"], size)
    assert any("not applied" in n and "dead-units" in n for n in rf["notes"])
    big = [t for t in rf["tensors"] if t["stats"] and t["stats"]["size"] >= 2048 * 2048]
    assert len(big) == kernels
    for t in big:
        assert t["stats"]["sampled"] and t["stats"]["n"] <= 1 << 16


@pytest.mark.parametrize("kind", ["torch", "gguf"])
def test_s3_sample_only_reads_under_5_percent(s3: dict[str, str], tmp_path: Path,
                                              kind: str) -> None:
    """The always-run version of the 1 GB measurement (32 MiB files, same ratios)."""
    import s3fs

    name = f"big.{'pt' if kind == 'torch' else 'gguf'}"
    path = _big_torch(tmp_path / name) if kind == "torch" else _big_gguf(tmp_path / name)
    size = path.stat().st_size
    s3fs.S3FileSystem(skip_instance_cache=True).put(str(path), f"models/big/{name}")
    rf = _audit(f"s3://models/big/{name}", sample_only=True)
    _assert_sampled(rf, size, kernels=2)
    full = _audit(f"s3://models/big/{name}")
    assert size - 4096 < full["remote"]["bytes_fetched"] <= size
    assert full["remote"]["sample_only"] is False
    # the sample tells the same scheme as the full read
    pairs = zip((t for t in rf["tensors"] if t["stats"]), (t for t in full["tensors"] if t["stats"]))
    for sampled, whole in pairs:
        if whole["stats"]["size"] >= 2048 * 2048:
            assert sampled["scheme"]["rule"] == whole["scheme"]["rule"], (sampled, whole)
            assert abs(sampled["stats"]["std"] - whole["stats"]["std"]) < 0.02 * whole["stats"]["std"]


def test_s3_onnx_external_data_sample_only(s3: dict[str, str], tmp_path: Path) -> None:
    """ONNX external data: each external tensor sampled by ranges; the graph read whole."""
    onnx = pytest.importorskip("onnx")
    import s3fs
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(6)
    w = (rng.standard_normal((2048, 2048), dtype=np.float32) * np.float32(np.sqrt(2 / 2048)))
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "one", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2048])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2048])],
        [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "big.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="big.onnx.data", size_threshold=0)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    for f in ("big.onnx", "big.onnx.data"):
        fs.put(str(tmp_path / f), f"models/bigonnx/{f}")
    size = sum((tmp_path / f).stat().st_size for f in ("big.onnx", "big.onnx.data"))
    rf = _audit("s3://models/bigonnx/big.onnx", sample_only=True)
    assert rf["remote"]["bytes_total"] == size
    _assert_sampled(rf, size, kernels=1)


def test_sample_only_embedded_onnx_is_read_whole_and_says_so(s3: dict[str, str],
                                                             tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import s3fs

    model = onnx.load(s3["_onnx"])
    onnx.save_model(model, str(tmp_path / "embedded.onnx"))
    s3fs.S3FileSystem(skip_instance_cache=True).put(str(tmp_path / "embedded.onnx"),
                                                    "models/embedded/model.onnx")
    rf = _audit("s3://models/embedded/model.onnx", sample_only=True)
    assert rf["remote"]["sample_only"] is False
    assert any("read whole" in n for n in rf["notes"])
    assert not any("not applied" in n and "dead-units" in n for n in rf["notes"])


# --------------------------------------------------------------------------- errors

_FAULT = re.compile(r"/fault-(404|403|slow|cut)-at-(\d+)/")
_S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
             "<Message>injected</Message></Error>")


class _FaultProxy(BaseHTTPRequestHandler):
    """Forwards to an upstream server (moto's S3 or the range server); a GET of a path holding
    ``/fault-<kind>-at-<n>/`` fails from its n-th GET on (HEADs pass): 404, 403, a stall past
    the client's timeout, or a body cut in the middle -- the failures of a request made while
    the format's reader is at work (its header, its central directory, a tensor)."""

    upstream: tuple[str, int]
    counts: dict[str, int]
    ranges: dict[str, list[tuple[int, int]]]  # byte ranges asked per path (Range headers)
    lock = threading.Lock()

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._forward()

    def do_GET(self) -> None:
        self._forward()

    def _forward(self) -> None:
        path = self.path.split("?")[0]
        m = _FAULT.search(path)
        kind = None
        asked = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if asked and self.command == "GET":
            with self.lock:
                self.ranges.setdefault(path, []).append(
                    (int(asked.group(1)), int(asked.group(2)) + 1))
        if m and self.command == "GET":
            with self.lock:
                self.counts[path] = n = self.counts.get(path, 0) + 1
            kind = m.group(1) if n >= int(m.group(2)) else None
        if kind in ("404", "403"):
            body = _S3_ERROR.format(code="NoSuchKey" if kind == "404" else "AccessDenied").encode()
            self.send_response(int(kind))
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if kind == "slow":
            time.sleep(3)
        conn = http_client.HTTPConnection(*self.upstream, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
        conn.request(self.command, self.path, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "server",
                                 "date"):
                self.send_header(k, v)
        length = int(resp.getheader("Content-Length") or len(data))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        if kind == "cut" and len(data) > 1:
            self.wfile.write(data[: len(data) // 2])  # the connection closes mid-body
            self.close_connection = True
            return
        self.wfile.write(data)


@contextlib.contextmanager
def _proxy(upstream: str, ranges: dict | None = None) -> Iterator[str]:
    host, port = upstream.split("://", 1)[-1].split(":")
    handler = type("P", (_FaultProxy,), {"upstream": (host, int(port)), "counts": {},
                                         "ranges": {} if ranges is None else ranges})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True  # a stalled handler is not waited for on close
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_WORDS = {"404": "not found (404)", "403": "access denied (403)", "slow": "timed out after 1 s",
          "cut": "truncated"}


def _audit_in_process(url: str) -> tuple[str, str | None]:
    from initaudit.engine import AuditConfig, audit_path

    report = audit_path(url, AuditConfig(workers=1))
    return report.status.value, report.error


def _requests_of(url: str) -> int:
    """How many GETs a clean audit of ``url`` makes."""
    from initaudit.engine import AuditConfig, audit_path

    report = audit_path(url, AuditConfig(workers=1))
    assert report.remote is not None and report.status.value != "error", report.error
    return int(report.remote["requests"])


@pytest.mark.parametrize("name", ["model.pt", "model.gguf"])
def test_errors_while_reading_each_format_are_one_line(http: HTTP, s3: dict[str, str],
                                                       tmp_path: Path, name: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """404, 403, timeout and a cut body, over HTTP and S3, at the format's second request
    (header / central directory) and at its last (a tensor): the file is unreadable with one
    line naming the cause -- never a partial audit, a traceback or a secret."""
    import s3fs

    base, root, _ = http
    src = _torch_zip(tmp_path / name) if name.endswith(".pt") else _gguf(tmp_path / name)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put(str(src), f"models/clean/{name}")
    (root / "clean").mkdir(exist_ok=True)
    (root / "clean" / name).write_bytes(src.read_bytes())
    monkeypatch.setenv("INITAUDIT_REMOTE_TIMEOUT", "1")
    monkeypatch.setenv("INITAUDIT_REMOTE_RETRIES", "2")
    fsspec = pytest.importorskip("fsspec")
    for scheme, upstream in (("http", base), ("s3", s3["AWS_ENDPOINT_URL"])):
        with _proxy(upstream) as proxy:
            s3fs.S3FileSystem.clear_instance_cache()
            fsspec.filesystem("http").clear_instance_cache()
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)

            def url(folder: str, scheme: str = scheme, proxy: str = proxy) -> str:
                return (f"{proxy}/{folder}/{name}" if scheme == "http"
                        else f"s3://models/{folder}/{name}")

            last = _requests_of(url("clean"))
            assert last >= 3
            for kind, words in _WORDS.items():
                for at in (2, last) if kind != "slow" else (last,):  # a stall costs 2 s
                    folder = f"fault-{kind}-at-{at}"
                    if scheme == "http":
                        (root / folder).mkdir(exist_ok=True)
                        (root / folder / name).write_bytes(src.read_bytes())
                    else:
                        fs.put(str(src), f"models/{folder}/{name}")
                    status, error = _audit_in_process(url(folder))
                    where = f"{scheme} {kind} at request {at} of {last}"
                    assert status == "error", (where, error)
                    assert error is not None and "\n" not in error and words in error, (where, error)
                    assert "secret" not in error and "testing" not in error, error
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3["AWS_ENDPOINT_URL"])
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("name", ["model.pt", "model.gguf"])
def test_cli_cut_mid_read_is_one_line_exit_2(http: HTTP, name: str) -> None:
    base, root, _ = http
    if not (root / name).exists():
        _torch_zip(root / name) if name.endswith(".pt") else _gguf(root / name)
    url = f"{base}/truncated/{name}"
    out = _run(url, env={"INITAUDIT_REMOTE_TIMEOUT": "1", "INITAUDIT_REMOTE_RETRIES": "2"})
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "truncated" in lines[0], out.stderr


# --------------------------------------------------------------------------- 1 GB (slow)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["safetensors", "torch", "gguf"])
def test_one_gigabyte_checkpoint(http: HTTP, fmt: str) -> None:
    """The issue's measurement: a 1 GiB checkpoint audited with --sample-only reading under 5 %
    of it, and in full fetching every byte but the padding, none twice (the server's log of
    the ranges it served). Served by the loopback range server: moto's S3 server, given a
    1 GiB object, was killed by the kernel's OOM killer at 7.3 GB RSS (single PutObject) or
    answered CompleteMultipartUpload with a 500 on this machine; the always-run
    test_s3_sample_only_reads_under_5_percent asserts the same ratios on S3."""
    if not os.environ.get("INITAUDIT_SLOW"):
        pytest.skip("slow: set INITAUDIT_SLOW=1 to write and audit 1 GiB checkpoints")
    from benchmarks.remote import SUFFIX, make_checkpoint

    base, root, sent = http
    path = make_checkpoint(root / f"gib{SUFFIX[fmt]}", fmt, 1024)
    try:
        size = path.stat().st_size
        assert size >= 2**30
        url, key = f"{base}/{path.name}", f"/{path.name}"
        sent.clear()
        sampled = _audit(url, sample_only=True)
        assert sampled["remote"]["bytes_fetched"] == sent[key] < 0.05 * size, sampled["remote"]
        assert sampled["remote"]["sample_only"] is True
        kernels = [t for t in sampled["tensors"] if t["stats"] and t["stats"]["size"] >= 2**20]
        assert len(kernels) == 64 and all(t["scheme"]["rule"] == "he" for t in kernels)
        sent.clear()
        full = _audit(url)
        fetched = full["remote"]["bytes_fetched"]
        assert _disjoint(sent.ranges[key])
        assert fetched == sent[key] == sum(b - a for a, b in sent.ranges[key])
        assert size - 4096 < fetched <= size
        if fmt != "torch":  # a zip's local padding and data descriptors are never read
            assert fetched == size
    finally:
        path.unlink()


# --------------------------------------------------------------------------- samples are rows


class _FileSource:
    """A ByteSource over a local file (what initaudit.remote gives the loaders), sampling."""

    def __init__(self, path: Path, seed: int | None) -> None:
        self.name, self.size, self.sample_seed = str(path), path.stat().st_size, seed
        self._data = path.read_bytes()
        self.fetched = 0

    def pread(self, offset: int, length: int, *, keep: bool = False) -> bytes:
        assert 0 <= offset and offset + length <= self.size
        self.fetched += length
        return self._data[offset : offset + length]


@pytest.mark.parametrize("kind", ["torch", "gguf-q8", "gguf-f16"])
def test_sampled_rows_are_rows_of_the_tensor(tmp_path: Path, kind: str) -> None:
    """Each row a sampled read returns (quantized GGUF rows decoded from whole blocks) is a row
    of the tensor read whole by the same loader: sampling cuts rows, never bytes."""
    from initaudit.loaders import LoadOptions, gguf_loader, torch_loader
    from initaudit.loaders._ranged import SAMPLE_ELEMENTS, SOURCE_KEY

    if kind == "torch":
        path, module, fmt = _big_torch(tmp_path / "m.pt", n=1, rows=1024, cols=512), torch_loader, "pytorch-zip"
    else:
        gguf = pytest.importorskip("gguf")
        Q = gguf.GGMLQuantizationType
        rng = np.random.default_rng(9)
        data = rng.standard_normal((1024, 512), dtype=np.float32)
        path, module, fmt = tmp_path / "m.gguf", gguf_loader, "gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        if kind == "gguf-q8":
            w.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(data, Q.Q8_0), raw_dtype=Q.Q8_0)
        else:
            w.add_tensor("blk.0.attn_q.weight", data.astype(np.float16), raw_dtype=Q.F16)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    whole = {t.name: np.asarray(t.load()) for t in
             module.load(path, fmt, LoadOptions(extra={SOURCE_KEY: _FileSource(path, None)})).tensors()}
    local = {t.name: np.asarray(t.load()) for t in module.load(path, fmt, LoadOptions()).tensors()}
    source = _FileSource(path, seed=0)
    sampled = {t.name: np.asarray(t.load()) for t in
               module.load(path, fmt, LoadOptions(extra={SOURCE_KEY: source})).tensors()}
    big = [n for n, v in whole.items() if v.size >= 1024 * 512]
    assert big
    for name in big:
        np.testing.assert_array_equal(whole[name], local[name])  # ranged = local, whole
        s = sampled[name]
        assert s.shape[1:] == whole[name].shape[1:] and 0 < s.size <= SAMPLE_ELEMENTS
        rows = {r.tobytes() for r in whole[name]}
        assert all(r.tobytes() in rows for r in s)
        assert len({r.tobytes() for r in s}) == s.shape[0]  # no row twice
    # the tensor sampled, plus the 64 KiB read-ahead of a GGUF header
    assert source.fetched < 0.3 * path.stat().st_size
