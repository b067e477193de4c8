"""initaudit's unsafe-content verdict next to picklescan, modelscan and ModelAudit, file by file.

Corpus (built in --work, nothing downloaded at run time):
* the peers' own public test files: picklescan ``tests/data``, modelscan ``tests/data``,
  ModelAudit ``tests/assets`` (pickle, torch, Keras, zip, numpy files only: their JSON/Jinja/
  safetensors-metadata samples are not executed by any model loader), fickling's fixture. They
  are read from local git mirrors (``--mirrors``, as the `fetch` tool lays them out).
  Labels come from the file names the peers gave them (malicious/evil/exploit/... vs
  benign/safe/...); files with neither word are "unlabelled" and only listed.
* the files the peers' test suites write at run time (modelscan's fixtures, ModelAudit's asset
  generators), ported to tests/attack/peer_generators.py, and the pickles of fickling's bypass
  tests (benchmarks/fickling_bypasses.py, run with the peers' Python where fickling is installed).
* initaudit's crafted corpus (tests/attack/craft.py): one file per attack class of issue 11,
  each one proven (by tests/test_attack_fail_closed.py) to run its payload in the framework.
* benign checkpoints written by the frameworks themselves (torch.save of a state_dict, a whole
  nn.Sequential, an optimizer state_dict, an nn.Parameter; TorchScript; torch.export .pt2;
  np.savez; Keras .keras and .h5).

A file counts as flagged when the scanner says it is unsafe: initaudit reports IA501
unsafe-content; picklescan and modelscan exit 1 (their "issues found" code); ModelAudit reports
a critical issue (column ``modelaudit``) - its exit code 1 also counts warnings and infos, shown
separately as ``modelaudit_exit1``.

Usage (peers installed in their own venv, never in initaudit's)::

    python benchmarks/scanners.py --peers /work/venv-sec/bin --work /tmp/scanbench \\
        [--mirrors /work/.mirror] [--json out.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (mirror dir, path prefix inside the repo, peer name)
SOURCES = [
    ("mmaitre314+picklescan", "tests/data/", "picklescan"),
    ("mmaitre314+picklescan", "tests/data2/", "picklescan"),  # advisories (GHSA-*) and more
    ("protectai+modelscan", "tests/data/", "modelscan"),
    ("promptfoo+modelaudit", "tests/assets/", "modelaudit"),
    ("trailofbits+fickling", "test/fixtures/", "fickling"),
]
MODEL_EXT = re.compile(r"\.(pkl|pickle|pt|pth|bin|h5|keras|npz|npy|zip|7z|joblib|ckpt|dill)$", re.IGNORECASE)
MALICIOUS = re.compile(r"malicious|evil|exploit|attack|bad_|unsafe|sploit|bypass|lambda|dill_func|"
                       r"decode_exec|nested_pickle|eval|system_call|traversal|GHSA-|codeinjection|"
                       r"exfiltration|io_FileIO|logging_FileHandler|types_CodeType|urlopen|"
                       r"type-confusion", re.IGNORECASE)
BENIGN = re.compile(r"benign|safe|^pytorch_model|new_pytorch_model|simple_nested|mit_model|"
                    r"agpl|mixed_licenses|squeezenet|model_weights|^int_arrays?", re.IGNORECASE)


# named "bad"/"malicious" by a peer but holding no payload any loader could run
NOT_A_MODEL = {
    "bad_pytorch.pt": "8 bytes of a PNG signature: picklescan's scan-error test",
}


@dataclass
class Item:
    path: Path
    source: str
    label: str  # malicious | benign | unlabelled


def collect_peer_files(mirrors: Path, out: Path) -> list[Item]:
    items: list[Item] = []
    for mirror, prefix, peer in SOURCES:
        git = mirrors / mirror / "repo"
        if not git.exists():
            print(f"skip {peer}: no mirror at {git}", file=sys.stderr)
            continue
        names = subprocess.run(["git", "-C", str(git), "ls-tree", "-r", "--name-only", "HEAD", prefix],
                               capture_output=True, text=True, check=True).stdout.split()
        for name in names:
            if not MODEL_EXT.search(name):
                continue
            dst = out / peer / name.replace("/", "__")
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                got = subprocess.run(["git", "-C", str(git), "show", f"HEAD:{name}"],
                                     capture_output=True, check=False)
                blob = got.stdout
                if got.returncode != 0 or blob.startswith(b"version https://git-lfs"):
                    continue  # large blobs may be absent from the mirror
                    continue
                dst.write_bytes(blob)
            base = Path(name).name
            if base in NOT_A_MODEL:
                items.append(Item(dst, peer, "unlabelled"))
                continue
            label = ("malicious" if MALICIOUS.search(name) else
                     "benign" if BENIGN.search(base) or BENIGN.search(name) else "unlabelled")
            items.append(Item(dst, peer, label))
    return items


def collect_generated(out: Path) -> list[Item]:
    """The files the peers' test suites write at run time (tests/attack/peer_generators.py)."""
    from tests.attack import peer_generators

    return [Item(p, "generated", label)
            for p, label in peer_generators.write_all(out / "generated").values()]


def collect_fickling(mirrors: Path, peers: Path, out: Path) -> list[Item]:
    """The pickles fickling's bypass tests build (benchmarks/fickling_bypasses.py, run with the
    peers' Python, which has fickling)."""
    git = mirrors / "trailofbits+fickling" / "repo"
    d = out / "fickling-bypass"
    if not git.exists() or not (peers / "python").exists():
        return []
    res = subprocess.run([str(peers / "python"), str(REPO / "benchmarks" / "fickling_bypasses.py"),
                          str(git), str(d)], capture_output=True, text=True, timeout=300, check=False)
    if res.returncode != 0:
        print(f"skip fickling bypasses: {res.stderr[-300:]}", file=sys.stderr)
        return []
    rows = json.loads((d / "labels.json").read_text())
    return [Item(d / r["file"], "fickling-bypass", r["label"]) for r in rows]


def collect_own(out: Path) -> list[Item]:
    from tests.attack import craft

    d = out / "crafted"
    d.mkdir(parents=True, exist_ok=True)
    sentinel = out / "SENTINEL"
    files = dict(craft.pure_cases(d, sentinel))
    try:
        files.update(craft.torch_cases(d, sentinel))
    except ImportError:
        pass
    items = [Item(p, "crafted", "malicious") for p in files.values()]
    b = out / "framework-benign"
    b.mkdir(parents=True, exist_ok=True)
    script = REPO / "tests" / "attack" / "benign.py"
    subprocess.run([sys.executable, str(script), str(b)], check=True, timeout=600,
                   env={**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "jax")})
    items += [Item(p, "framework", "benign") for p in sorted(b.iterdir())]
    return items


def run_initaudit(path: Path) -> tuple[bool, str]:
    from initaudit.engine import AuditConfig, audit_path

    fr = audit_path(path, AuditConfig())
    flagged = any(f.code == "IA501" for f in fr.findings)
    return flagged, fr.error or ("IA501" if flagged else "ok")


_PEER_ENV = {"NO_COLOR": "1", "PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1",
             "DO_NOT_TRACK": "1"}


def run_peer(cmd: list[str], timeout: float = 120) -> tuple[bool, str]:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                             env={**os.environ, **_PEER_ENV})
    except subprocess.TimeoutExpired:
        return False, "timeout"
    return res.returncode == 1, f"exit {res.returncode}"


def run_modelaudit(exe: Path, path: Path, timeout: float = 180) -> dict[str, tuple[bool, str]]:
    """ModelAudit exits 1 for any issue, warnings and infos included: report both readings,
    "any issue" (its exit code) and "critical" (what it calls a security problem)."""
    try:
        res = subprocess.run([str(exe), "scan", "--no-cache", "--format", "json", str(path)],
                             capture_output=True, text=True, timeout=timeout, check=False,
                             env={**os.environ, **_PEER_ENV})
    except subprocess.TimeoutExpired:
        return {"modelaudit": (False, "timeout"), "modelaudit_exit1": (False, "timeout")}
    try:
        sev = [i.get("severity") for i in json.loads(res.stdout).get("issues", [])]
    except (json.JSONDecodeError, AttributeError):
        sev = []
    return {"modelaudit": ("critical" in sev, f"exit {res.returncode} {sorted(set(map(str, sev)))}"),
            "modelaudit_exit1": (res.returncode == 1, f"exit {res.returncode}")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peers", type=Path, default=Path("/work/venv-sec/bin"))
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    ap.add_argument("--work", type=Path, default=Path("/tmp/scanbench"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    items = (collect_peer_files(args.mirrors, args.work / "peers")
             + collect_generated(args.work) + collect_fickling(args.mirrors, args.peers, args.work)
             + collect_own(args.work))
    scanners = {
        "initaudit": run_initaudit,
        "picklescan": lambda p: run_peer([str(args.peers / "picklescan"), "--path", str(p)]),
        "modelscan": lambda p: run_peer([str(args.peers / "modelscan"), "-p", str(p)]),
    }
    columns = list(scanners) + ["modelaudit", "modelaudit_exit1"]
    # the peers' verdicts depend only on the file bytes: cached by content hash across runs
    cache_file = args.work / "peer-cache.json"
    cache: dict[str, dict] = json.loads(cache_file.read_text()) if cache_file.exists() else {}
    rows = []
    t0 = time.time()
    for it in items:
        row = {"file": str(it.path.relative_to(args.work)), "source": it.source, "label": it.label}
        key = hashlib.sha256(it.path.read_bytes()).hexdigest()
        results = {"initaudit": run_initaudit(it.path)}
        if key not in cache:
            peer = {name: fn(it.path) for name, fn in scanners.items() if name != "initaudit"}
            peer.update(run_modelaudit(args.peers / "modelaudit", it.path))
            cache[key] = peer
            cache_file.write_text(json.dumps(cache))
        results.update({k: tuple(v) for k, v in cache[key].items()})
        for name, (flagged, detail) in results.items():
            row[name] = flagged
            row[name + "_detail"] = detail
        rows.append(row)
        print(f"{row['label']:10s} {'  '.join(f'{n}={int(row[n])}' for n in columns)}  {row['file']}",
              flush=True)
    if (args.work / "SENTINEL").exists():
        print("SENTINEL EXISTS: something executed a payload", file=sys.stderr)
        return 3
    print(f"\n{len(rows)} files in {time.time() - t0:.0f} s\n")
    print(table(rows, columns))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


def table(rows: list[dict], scanners: list[str]) -> str:
    peers = ("picklescan", "modelscan", "modelaudit", "fickling")
    groups = [
        ("peers' committed malicious files", lambda r: r["source"] in peers and r["label"] == "malicious"),
        ("peers' generated malicious files", lambda r: r["source"] == "generated" and r["label"] == "malicious"),
        ("fickling bypass-test pickles", lambda r: r["source"] == "fickling-bypass" and r["label"] == "malicious"),
        ("**all peers' malicious files**", lambda r: r["source"] not in ("crafted", "framework") and r["label"] == "malicious"),
        ("crafted (framework runs payload)", lambda r: r["source"] == "crafted"),
        ("peers' benign files (false flags)", lambda r: r["source"] in peers + ("generated",) and r["label"] == "benign"),
        ("fickling's likely-safe pickles (calls, not checkpoints)", lambda r: r["source"] == "fickling-bypass" and r["label"] == "benign"),
        ("framework-written checkpoints (false flags)", lambda r: r["source"] == "framework"),
    ]
    lines = ["| set | files | " + " | ".join(scanners) + " |",
             "|---|---:|" + "---:|" * len(scanners)]
    for title, pick in groups:
        sel = [r for r in rows if pick(r)]
        lines.append(f"| {title} | {len(sel)} | " + " | ".join(str(sum(r[s] for r in sel)) for s in scanners) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
