"""``--format csv``: one row per finding, for spreadsheets and ``pandas.read_csv``.

RFC 4180 CSV (comma separated, fields quoted where needed, CRLF line ends as the ``csv`` module
writes them), a header row, then the rows in the report's order. A file the audit could not
read, and each tensor it did not analyse, get a row of their own (``kind`` ``unreadable`` /
``skipped``): a spreadsheet of findings must not make a partly read file look clean. Sample::

    path,kind,code,name,severity,confidence,tensor,layer,message
    mlp_he_sigmoid.onnx,finding,IA101,he-before-saturating,error,1.0,fc1.weight,fc1,He-scaled ...
    part.npz,skipped,,,,,x,,object array (pickled Python objects): never loaded
    bad.onnx,unreadable,,,,,,,truncated protobuf (file cut short?)

Findings accepted by a per-tensor ignore or a baseline are not rows (as in every other format);
``--verbose``, ``--quiet`` and colours do not apply. Names come from the audited file, which may
be hostile: a text cell that a spreadsheet would read as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) gets a leading ``'`` (OWASP's CSV-injection advice).
"""

from __future__ import annotations

import csv
from typing import TYPE_CHECKING, TextIO

from ..report import Status
from ._ci import skipped_items

if TYPE_CHECKING:  # pragma: no cover
    from ..report import Report
    from ..settings import AuditConfig

COLUMNS = ("path", "kind", "code", "name", "severity", "confidence", "tensor", "layer", "message")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    """Write the header and one row per finding, unreadable file and skipped tensor."""
    writer = csv.writer(stream)
    writer.writerow(COLUMNS)
    writer.writerows(tuple(_cell(v) for v in row) for row in rows(result))


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_START) else text


def rows(result: Report) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for fr in result.files:
        if fr.status is Status.ERROR:
            out.append((fr.path, "unreadable", "", "", "", "", "", "", fr.error or ""))
            continue
        for f in fr.findings:
            out.append(
                (
                    fr.path,
                    "finding",
                    f.code,
                    f.name,
                    f.severity.value,
                    str(round(float(f.confidence), 4)),
                    f.tensor or "",
                    f.layer or "",
                    f.message,
                )
            )
        for name, reason in skipped_items(fr):  # the loader's list and unreadable tensors, once
            out.append((fr.path, "skipped", "", "", "", "", name, "", reason))
    return out
