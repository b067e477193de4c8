"""HTML reporter: one self-contained page to *look* at the weights (``--format html``).

No network request, no CDN, no plotting library: the charts are hand-written inline SVG
(:mod:`._svg`), the styles inline, and a 30-line inline script adds the layer-name and severity
filter (without script every section is simply shown). It opens offline and works as a CI
artifact. Per file, in this order:

- the summary: format, framework, status, trained/initialized verdict, coverage (``files[].coverage``);
- the findings, worst first, each linked to its tensor's card and to its rule's page, which is
  rendered into the same file from ``rules/*.md`` (a safe Markdown subset, :mod:`._markdown`);
- the signal-propagation chart: the predicted second moment after each layer, and the
  ``--probe`` measurement where it was run, with the numbers as a table;
- one card per analysed kernel: a histogram of a reproducible sample of its values (re-read from
  the file: the engine keeps only moments) with the identified scheme's density, and the density
  a finding recommends instead (He's normal against the Glorot density a sigmoid wants), fans,
  activation, observed vs expected std and the identification evidence. Repeated blocks
  (``encoder.layer.0``, ``encoder.layer.1``...) are grouped and folded.

Sample (abridged)::

    <section class="file" id="f0"><h2>mlp_he_sigmoid.onnx</h2> ...
    <li class="finding" data-sev="error" data-name="fc1 fc1.weight"><span class="sev">✗ error</span>
      IA101 he-before-saturating <a href="#f0-k0">fc1.weight</a> ...
    <figure><svg class="hist" role="img" aria-labelledby="..."><title>Histogram of fc1.weight ...
"""

from __future__ import annotations

import re
from html import escape
from typing import TYPE_CHECKING, Any, TextIO

from ..report import FileReport, Finding, Report, Status, TensorReport
from ._density import analysed_kernels, curves_for, histogram, load_samples
from ._markdown import render as render_markdown
from ._svg import histogram_svg, legend_swatch, signal_svg

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from ..activations import ActivationHint
    from ..analysis.results import SignalReport
    from ..diff import DiffReport
    from ..settings import AuditConfig

SEV_MARK = {"error": "✗", "warning": "⚠", "info": "ℹ"}
# digits between separators: the index of a repeated block (layer.3., h.11., blocks_2_)
_BLOCK_INDEX = re.compile(r"(?<=[._/])\d+(?=[._/])")

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;
padding:0 1rem 3rem;color:#1b1b1b;background:#fff;line-height:1.4}
h1{font-size:1.5rem;margin:1rem 0 .25rem}h2{font-size:1.25rem;border-bottom:2px solid #ccc;padding-bottom:.2rem}
h3{font-size:1.05rem;margin-top:1.5rem}h4{font-size:.95rem;margin:.2rem 0;word-break:break-all}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em}
pre{background:#f5f5f5;padding:.5rem;overflow-x:auto}
.filters{position:sticky;top:0;background:#fafafa;border:1px solid #ddd;padding:.4rem .6rem;z-index:1;
display:flex;gap:1rem;flex-wrap:wrap;align-items:center}
.summary dt{font-weight:600;float:left;clear:left;min-width:9rem}.summary dd{margin:0 0 .15rem 9.5rem}
.findings{list-style:none;padding:0}.finding{border-left:5px solid #999;padding:.3rem .6rem;margin:.3rem 0;background:#fafafa}
.finding[data-sev=error]{border-left-color:#b00020}.finding[data-sev=warning]{border-left-color:#b26a00}
.finding[data-sev=info]{border-left-color:#0b5394}
.sev{font-weight:700;margin-right:.4rem}.sev-error{color:#b00020}.sev-warning{color:#8a5200}.sev-info{color:#0b5394}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:.8rem}
.tensor{border:1px solid #ccc;border-radius:4px;padding:.5rem;background:#fff}
.tensor[data-sev=error]{border:2px solid #b00020}.tensor[data-sev=warning]{border:2px solid #b26a00}
.tensor dl{display:grid;grid-template-columns:auto 1fr;gap:0 .6rem;margin:.3rem 0;font-size:.85rem}
.tensor dt{font-weight:600}.tensor dd{margin:0}
figure{margin:0}figcaption{font-size:.8rem}.swatch{vertical-align:middle;margin-right:.2rem}
.bars{display:inline-block;width:14px;height:10px;background:#9ecae1;border:1px solid #4a7fa5;vertical-align:middle;margin-right:.2rem}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0}th,td{border:1px solid #ccc;padding:.15rem .4rem;text-align:left}
details.group{border:1px dashed #999;padding:.3rem .6rem;margin:.6rem 0}details.group>summary{cursor:pointer;font-weight:600}
.rule-page{border:1px solid #ddd;padding:0 1rem;margin:1rem 0;background:#fcfcfc}
.muted{color:#555}.hidden{display:none!important}
"""

# the filter: hide cards and findings whose name does not contain the text or whose severity is
# below the chosen one (cards without a finding count as "none", below info)
_SCRIPT = """
(function(){
  var rank={none:-1,info:0,warning:1,error:2};
  var nameBox=document.getElementById('filter-name');
  var sevBox=document.getElementById('filter-sev');
  var count=document.getElementById('filter-count');
  function apply(){
    var text=nameBox.value.trim().toLowerCase();
    var min=sevBox.value==='all'?-2:rank[sevBox.value];
    var items=document.querySelectorAll('[data-filter]');
    var shown=0;
    for(var i=0;i<items.length;i++){
      var el=items[i];
      var ok=(!text||(el.getAttribute('data-name')||'').toLowerCase().indexOf(text)>=0)&&
             (rank[el.getAttribute('data-sev')||'none']>=min);
      el.classList.toggle('hidden',!ok);
      if(ok&&el.hasAttribute('data-count')){shown++;}
    }
    count.textContent=shown+' '+count.getAttribute('data-noun')+' shown';
  }
  nameBox.addEventListener('input',apply);
  sevBox.addEventListener('change',apply);
  // report.html?name=fc&sev=warning opens filtered (a link to share from a CI artifact)
  var query=new URLSearchParams(window.location.search);
  if(query.get('name')){nameBox.value=query.get('name');}
  if(query.get('sev')&&sevBox.querySelector('option[value="'+query.get('sev')+'"]')){
    sevBox.value=query.get('sev');
  }
  apply();
})();
"""


def report(
    result: Report,
    stream: TextIO,
    *,
    config: AuditConfig,
    color: bool,
    verbose: bool = False,
    quiet: bool = False,
) -> None:
    stream.write(render(result, config=config))


def render(result: Report, *, config: AuditConfig | None = None) -> str:
    """The whole page as a string."""
    from .. import __version__

    hints = tuple(config.hints) if config is not None else ()
    seed = config.seed if config is not None else 0
    counts = result.counts()
    body: list[str] = []
    rules_used: dict[str, Finding] = {}
    for index, fr in enumerate(result.files):
        body.append(_file_section(fr, index, hints=hints, seed=seed))
        for f in fr.findings:
            rules_used.setdefault(f.name, f)
    summary = (
        f"{counts['files']} file(s) · {counts['tensors']} tensor(s) · "
        f"{counts['errors']} error(s), {counts['warnings']} warning(s), "
        f"{counts['infos']} info · {counts['unreadable_files']} unreadable"
    )
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # no request of any kind: a strict policy makes a stray URL fail loudly in a browser
        (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        ),
        f"<title>initaudit report · {escape(_title(result))}</title>",
        f"<style>{_CSS}</style></head><body>",
        (
            f'<header><h1>initaudit report</h1><p class="muted">initaudit {escape(__version__)} · '
            f"{escape(summary)}</p></header>"
        ),
        (
            '<div class="filters" role="search"><label>Layer name contains '
            '<input id="filter-name" type="search" placeholder="e.g. fc1"></label>'
            '<label>Severity at least <select id="filter-sev">'
            '<option value="all">all</option><option value="info">info</option>'
            '<option value="warning">warning</option><option value="error">error</option>'
            '</select></label><span id="filter-count" class="muted" aria-live="polite" '
            'data-noun="layer card(s)"></span></div>'
        ),
        "<main>",
        *body,
        _rules_section(rules_used),
        "</main>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(page) + "\n"


def _title(result: Report) -> str:
    names = [fr.path.replace("\\", "/").rsplit("/", 1)[-1] for fr in result.files]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _file_section(
    fr: FileReport, index: int, *, hints: tuple[ActivationHint, ...], seed: int
) -> str:
    fid = f"f{index}"
    out = [
        f'<section class="file" id="{fid}" aria-labelledby="{fid}-h">',
        f'<h2 id="{fid}-h">{escape(fr.path)}</h2>',
    ]
    if fr.status is Status.ERROR:
        out.append(
            f'<p><span class="sev sev-error">✗ could not be read:</span> '
            f"{escape(fr.error or '')}</p></section>"
        )
        return "\n".join(out)
    out.append(_summary(fr))
    kernels = analysed_kernels(fr)
    anchors = {t.name: f"{fid}-k{i}" for i, t in enumerate(kernels)}
    out.append(_findings(fr, anchors))
    if fr.signal is not None and fr.signal.layers:
        out.append(_signal(fr.signal, fid))
    samples, problems = load_samples(fr.path, [t.name for t in kernels], hints=hints, seed=seed)
    out.append(f"<h3>Kernels ({len(kernels)} analysed)</h3>")
    if kernels:
        out.append(
            '<p class="muted">Bars: histogram of a reproducible sample of the stored values '
            "(density scale). Lines: the density of the identified scheme "
            f"({legend_swatch('identified')}solid) and of the scheme a finding recommends "
            f"({legend_swatch('suggested')}dashed).</p>"
        )
    out.extend(_kernel_groups(fr, kernels, anchors, samples, problems))
    others = [t for t in fr.tensors if t not in kernels]
    if others:
        out.append(_other_tensors(others))
    out.append("</section>")
    return "\n".join(out)


def _summary(fr: FileReport) -> str:
    rows: list[tuple[str, str]] = [
        ("format", fr.format or "?"),
        ("framework", fr.framework or "unknown"),
        ("status", fr.status.value),
    ]
    if fr.state is not None:
        rows.append(("weights look", f"{fr.state.state.value} — {fr.state.reason}"))
    cov = fr.coverage
    if cov is None:
        rows.append(
            (
                "coverage",
                ("not enumerated for this file (the loader does not list its stored tensors yet)"),
            )
        )
    else:
        rows.append(
            (
                "coverage",
                f"{cov.weights_analysed} of {cov.weights_present} weight tensors "
                f"analysed ({cov.fraction:.0%} of their bytes)"
                + ("" if cov.complete else " — INCOMPLETE"),
            )
        )
    rows.append(
        ("tensors", f"{len(fr.tensors)} ({sum(1 for t in fr.tensors if t.skipped)} skipped)")
    )
    html = ['<dl class="summary">']
    html += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows]
    html.append("</dl>")
    for note in fr.notes:
        html.append(f'<p class="muted">Note: {escape(note)}</p>')
    if fr.skipped:
        html.append(f"<details><summary>Skipped tensors ({len(fr.skipped)})</summary><ul>")
        html += [f"<li><code>{escape(s.name)}</code>: {escape(s.reason)}</li>" for s in fr.skipped]
        html.append("</ul></details>")
    return "\n".join(html)


def _findings(fr: FileReport, anchors: dict[str, str]) -> str:
    if not fr.findings:
        return "<h3>Findings</h3><p>✓ no findings.</p>"
    layer_kernel = {t.layer: t.name for t in fr.tensors if t.name in anchors}
    out = [f"<h3>Findings ({len(fr.findings)})</h3>", '<ul class="findings">']
    for f in fr.findings:
        sev = f.severity.value
        where = f.tensor or f.layer or ""
        # a layer-level finding (signal-propagation) links to its layer's kernel card
        target = anchors.get(f.tensor or "") or anchors.get(layer_kernel.get(f.layer or "", ""))
        link = (
            f'<a href="#{target}"><code>{escape(where)}</code></a>'
            if target
            else f"<code>{escape(where)}</code>"
            if where
            else ""
        )
        out.append(
            f'<li class="finding" data-filter data-sev="{sev}" '
            f'data-name="{escape(" ".join(x for x in (f.layer, f.tensor) if x), quote=True)}">'
            f'<span class="sev sev-{sev}">{SEV_MARK[sev]} {sev}</span>'
            f'<strong>{escape(f.code)}</strong> <a href="#rule-{escape(f.name, quote=True)}">'
            f'{escape(f.name)}</a> {link} <span class="muted">(confidence '
            f"{f.confidence:.0%})</span><br>{escape(f.message)}</li>"
        )
    out.append("</ul>")
    return "\n".join(out)


def _signal(signal: SignalReport, fid: str) -> str:
    layers = signal.layers
    band = signal.band
    measured = any(entry.measured_std is not None for entry in layers)
    desc = (
        "Predicted second moment of the signal after each of "
        f"{len(layers)} layers on a log scale"
        + (", with the onnxruntime measurement (--probe)" if measured else "")
        + (f"; the healthy band {band[0]:g} to {band[1]:g} is shaded" if band else "")
        + ". The numbers are in the table below."
    )
    svg = signal_svg(layers, band=band, title="Signal propagation", desc=desc, ident=f"{fid}-sig")
    legend = f"{legend_swatch('identified')}predicted E[x²] after the layer (circles)" + (
        f" · {legend_swatch('measured')}measured with --probe (squares)"
        if measured
        else " · run with --probe on an ONNX model to add the measurement"
    )
    rows = []
    for entry in layers:
        ms = entry.measured_std
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{escape(str(v))}</td>"
                for v in (
                    entry.layer,
                    entry.activation or "?",
                    _g(entry.q_in),
                    _g(entry.q_pre),
                    _g(entry.q_out),
                    _g(entry.forward_gain),
                    _g(None if ms is None else float(ms) ** 2),
                    entry.note or "",
                )
            )
            + "</tr>"
        )
    exits = [
        f"{k.replace('_', ' ')}: {layer}"
        for k, layer in (
            ("forward_exit", signal.forward_exit),
            ("backward_exit", signal.backward_exit),
        )
        if layer
    ]
    return "\n".join(
        [
            "<h3>Signal propagation</h3>",
            f"<figure>{svg}<figcaption>{legend}"
            + (f"<br>Leaves the band at — {escape('; '.join(exits))}" if exits else "")
            + "</figcaption></figure>",
            "<details><summary>Numbers per layer</summary><table><thead><tr>"
            + "".join(
                f'<th scope="col">{h}</th>'
                for h in (
                    "layer",
                    "activation",
                    "E[x²] in",
                    "Var(pre)",
                    "E[x²] out (predicted)",
                    "forward gain",
                    "E[x²] out (measured)",
                    "note",
                )
            )
            + "</tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table></details>",
        ]
    )


def _g(v: Any) -> str:
    try:
        return f"{float(v):.4g}"
    except (TypeError, ValueError):
        return "—"


def block_key(name: str) -> str:
    """The name with its block indices replaced by ``*``: ``encoder.layer.*.attention.q``."""
    return _BLOCK_INDEX.sub("*", name)


def _kernel_groups(
    fr: FileReport,
    kernels: list[TensorReport],
    anchors: dict[str, str],
    samples: dict[str, np.ndarray],
    problems: dict[str, str],
) -> list[str]:
    """Cards in model order; tensors sharing a block key (repeated blocks) folded together."""
    groups: dict[str, list[TensorReport]] = {}
    for t in kernels:
        groups.setdefault(block_key(t.name), []).append(t)
    out: list[str] = []
    singles: list[str] = []  # consecutive ungrouped cards share one grid
    emitted: set[str] = set()

    def close_grid() -> None:
        if singles:
            out.append(f'<div class="cards">{"".join(singles)}</div>')
            singles.clear()

    for t in kernels:
        key = block_key(t.name)
        if key in emitted:
            continue
        emitted.add(key)
        members = groups[key]
        cards = [_card(fr, m, anchors[m.name], samples, problems) for m in members]
        if len(members) == 1:
            singles.append(cards[0])
            continue
        close_grid()
        flagged = any(f.tensor in {m.name for m in members} for f in fr.findings)
        stds = [m.stats.std for m in members if m.stats is not None]
        schemes = sorted({m.scheme.label for m in members if m.scheme is not None})
        overview = (f" · std {min(stds):.3g}–{max(stds):.3g}" if stds else "") + (
            f" · {escape(schemes[0])}" if len(schemes) == 1 else f" · {len(schemes)} schemes"
        )
        out.append(
            f'<details class="group"{" open" if flagged else ""}><summary>'
            f"<code>{escape(key)}</code> — repeated block, {len(members)} tensors"
            + (" (with findings)" if flagged else "")
            + f'<span class="muted">{overview}</span>'
            + f'</summary><div class="cards">{"".join(cards)}</div></details>'
        )
    close_grid()
    return out


def _card(
    fr: FileReport,
    t: TensorReport,
    anchor: str,
    samples: dict[str, np.ndarray],
    problems: dict[str, str],
) -> str:
    from ._text import evidence_text as _evidence_text

    mine = [f for f in fr.findings if f.tensor == t.name]
    worst = max(mine, key=lambda f: f.severity.rank).severity.value if mine else "none"
    curves = curves_for(t, fr.findings)
    sc = t.scheme
    st = t.stats
    shape = "×".join(str(d) for d in t.shape)
    facts: list[tuple[str, str]] = [
        ("shape", f"{shape} {t.dtype} ({t.role}, {t.op})"),
        ("fan in → out", f"{_opt(t.fan_in)} → {_opt(t.fan_out)}"),
        (
            "activation",
            (t.activation or "unknown")
            + (f" ({t.activation_source})" if t.activation_source else ""),
        ),
    ]
    if st is not None:
        expected = f"{sc.expected_std:.4g}" if sc is not None and sc.expected_std else "—"
        facts.append(("std observed / expected", f"{st.std:.4g} / {expected}"))
        facts.append(("mean, kurtosis", f"{st.mean:.3g}, {st.excess_kurtosis:.3g}"))
    if sc is not None:
        facts.append(
            ("scheme", f"{sc.label}" + (f" (confidence {sc.confidence:.0%})" if sc.known else ""))
        )
        evidence = _evidence_text(sc.evidence)
        if evidence:
            facts.append(("evidence", evidence))
    if t.state is not None:
        facts.append(("state", f"{t.state.state.value}: {t.state.reason}"))
    for f in mine:
        facts.append((f"{SEV_MARK[f.severity.value]} {f.severity.value}", f"{f.code} {f.name}"))
    sample = samples.get(t.name)
    if sample is not None and sample.size:
        edges, density = histogram(sample, curves)
        desc = (
            f"Histogram of {sample.size} sampled values of {t.name} from {edges[0]:.3g} to "
            f"{edges[-1]:.3g}; observed std {st.std:.4g}"
            if st
            else ""
        )
        desc += "".join(f"; {c.role} density: {c.label} (std {c.std:.3g})" for c in curves)
        svg = histogram_svg(
            edges, density, curves, title=f"Histogram of {t.name}", desc=desc, ident=f"{anchor}-h"
        )
        legend = [
            (
                f'<span class="bars"></span>values ({sample.size} sampled of '
                f"{st.size if st else '?'})"
            )
        ]
        legend += [
            f"{legend_swatch(c.role)}{escape(c.label)}"
            + (f" — recommended by {escape(c.source or '')}" if c.role == "suggested" else "")
            for c in curves
        ]
        if not curves:
            legend.append("no scheme identified: no density drawn")
        figure = f"<figure>{svg}<figcaption>{' · '.join(legend)}</figcaption></figure>"
    else:
        figure = (
            f'<p class="muted">No histogram: '
            f"{escape(problems.get(t.name, 'no finite values to draw'))}</p>"
        )
    dl = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    name_attr = escape(f"{t.layer} {t.name}", quote=True)
    return (
        f'<article class="tensor" id="{anchor}" data-filter data-count data-sev="{worst}" '
        f'data-name="{name_attr}" aria-labelledby="{anchor}-n">'
        f'<h4 id="{anchor}-n">{escape(t.name)}</h4>{figure}<dl>{dl}</dl></article>'
    )


def _opt(v: int | None) -> str:
    return "?" if v is None else str(v)


def _other_tensors(tensors: list[TensorReport]) -> str:
    rows = []
    for t in tensors:
        st = t.stats
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{escape(v)}</td>"
                for v in (
                    t.name,
                    t.role,
                    "×".join(str(d) for d in t.shape) or "scalar",
                    t.dtype,
                    "—" if st is None else f"{st.mean:.3g}",
                    "—" if st is None else f"{st.std:.3g}",
                    t.skipped or "",
                )
            )
            + "</tr>"
        )
    return (
        "<details><summary>Other tensors (biases, norms, buffers, skipped): "
        f"{len(tensors)}</summary><table><thead><tr>"
        + "".join(
            f'<th scope="col">{h}</th>'
            for h in ("name", "role", "shape", "dtype", "mean", "std", "skipped")
        )
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></details>"
    )


def _rules_section(rules_used: dict[str, Finding]) -> str:
    if not rules_used:
        return ""
    from ..rules import find_rule
    from ..rules.docs import read_page

    out = ['<section id="rules"><h2>Rule pages</h2>']
    for name, finding in sorted(rules_used.items(), key=lambda kv: kv[1].code):
        rule = find_rule(name)
        text = read_page(rule) if rule is not None else None
        body = (
            render_markdown(text)
            if text
            else f"<p>{escape(finding.code)} {escape(name)}: no page found.</p>"
        )
        out.append(
            f'<article class="rule-page" id="rule-{escape(name, quote=True)}">{body}</article>'
        )
    out.append("</section>")
    return "\n".join(out)


__all__ = ["block_key", "render", "report"]


# ------------------------------------------------------------------------------------- diff


def render_diff(report: DiffReport) -> str:
    """``initaudit diff A B --format html``: the same page style, one row per tensor pair with a
    bar of its relative change (log scale), the findings first."""
    from .. import __version__
    from ..diff import UNCHANGED_REL, ChangeStatus
    from ._svg import change_bars_svg

    n = report.counts()
    sides = "".join(
        f"<dt>{tag}</dt><dd><code>{escape(fr.path)}</code> · {escape(fr.format or '?')}"
        + (
            f" · could not be read: {escape(fr.error)}"
            if fr.error
            else f" · weights look {escape(fr.state.state.value if fr.state is not None else '?')}"
        )
        + "</dd>"
        for tag, fr in (("A (before)", report.a), ("B (after)", report.b))
    )
    findings = "".join(
        f'<li class="finding" data-filter data-sev="error" data-name="{escape(f.tensor, quote=True)}">'
        f'<span class="sev sev-error">✗ {escape(f.kind.value)}</span><code>{escape(f.tensor)}</code>'
        f"<br>{escape(f.message)}</li>"
        for f in report.findings
    )
    rows = []
    for c in report.changes:
        name = (
            c.name
            if c.name_a == c.name_b or not (c.name_a and c.name_b)
            else f"{c.name_a} ↔ {c.name_b}"
        )
        mark = {ChangeStatus.UNCHANGED: "■ ", ChangeStatus.CHANGED: "▲ "}.get(c.status, "")
        sev = "error" if any(f.tensor == c.name for f in report.findings) else "none"
        rows.append(
            f'<tr data-filter data-count data-sev="{sev}" data-name="{escape(name, quote=True)}">'
            + "".join(
                f"<td>{escape(str(v))}</td>"
                for v in (
                    name,
                    "×".join(str(d) for d in (c.shape_a or c.shape_b or ())) or "scalar",
                    "—" if c.relative_change is None else f"{c.relative_change:.3g}",
                    mark + c.status.value + (" (transposed)" if c.transposed else ""),
                    c.matched_by or "—",
                    _pair(c.scheme_a, c.scheme_b),
                    _pair(c.state_a, c.state_b),
                )
            )
            + "</tr>"
        )
    compared = [c for c in report.changes if c.relative_change is not None]
    chart = ""
    if compared:
        desc = (
            f"Relative change of {len(compared)} matched tensors on a log scale; unchanged "
            f"tensors (at most {UNCHANGED_REL:g}) are drawn as hollow squares at the axis."
        )
        chart = (
            "<h2>Relative change per tensor</h2><figure>"
            + change_bars_svg(
                [(c.name, c.relative_change, c.status is ChangeStatus.UNCHANGED) for c in compared],
                title="Relative change per tensor",
                desc=desc,
                ident="chg",
                floor=UNCHANGED_REL,
            )
            + "<figcaption>Bars: ‖B−A‖/‖A‖ (log scale). Hollow squares: unchanged "
            "(frozen or dead if other tensors moved).</figcaption></figure>"
        )
    summary = (
        f"{n['changed']} changed, {n['unchanged']} unchanged, {n['added']} added, "
        f"{n['removed']} removed, {n['reshaped']} reshaped · {n['findings']} finding(s)"
    )
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        (
            '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">"
        ),
        "<title>initaudit diff</title>",
        f"<style>{_CSS}</style></head><body>",
        (
            f'<header><h1>initaudit diff</h1><p class="muted">initaudit {escape(__version__)} · '
            f"{escape(summary)}</p></header>"
        ),
        (
            '<div class="filters" role="search"><label>Tensor name contains '
            '<input id="filter-name" type="search"></label><label>Severity at least '
            '<select id="filter-sev"><option value="all">all</option>'
            '<option value="error">with a finding</option></select></label>'
            '<span id="filter-count" class="muted" aria-live="polite" '
            'data-noun="tensor row(s)"></span></div>'
        ),
        f'<main><dl class="summary">{sides}</dl>',
        f"<h2>Findings ({len(report.findings)})</h2>"
        + (f'<ul class="findings">{findings}</ul>' if findings else "<p>✓ no findings.</p>"),
        chart,
        "<h2>Tensors</h2><table><thead><tr>"
        + "".join(
            f'<th scope="col">{h}</th>'
            for h in (
                "tensor",
                "shape",
                "‖B−A‖/‖A‖",
                "status",
                "matched by",
                "scheme A → B",
                "state A → B",
            )
        )
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></main>",
        f"<script>{_SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(page) + "\n"


def _pair(a: str | None, b: str | None) -> str:
    return (a or "—") if a == b else f"{a or '—'} → {b or '—'}"
