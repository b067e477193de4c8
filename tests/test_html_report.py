"""The HTML report (``--format html``): valid, self-contained, one histogram per analysed kernel,
densities that are densities, rule pages rendered safely.

The browser half (Chromium renders it, no console message, screenshot) is in
``test_html_browser.py``; both use :func:`check_html` from here.
"""

from __future__ import annotations

import math
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from initaudit.engine import AuditConfig, audit_path
from initaudit.report import Report
from initaudit.reporters import get_reporter
from initaudit.reporters._density import (
    TN2_STD_FACTOR,
    Curve,
    curves_for,
    pdf,
    sample_values,
)
from initaudit.reporters._markdown import render as render_markdown
from initaudit.reporters.html import block_key, render

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
SAMPLE_FILES = sorted(SAMPLES.glob("*.onnx"))
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
        "track", "wbr"}
# attributes that make a browser fetch something
URL_ATTRS = {"src", "href", "srcset", "action", "formaction", "poster", "data", "xlink:href"}


class StrictChecker(HTMLParser):
    """html.parser with strict checks: every element closed in order, unique ids, in-page links
    that resolve, no attribute or CSS that would reach the network."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.links: list[str] = []
        self.errors: list[str] = []
        self.tags: dict[str, int] = {}
        self.classes: list[tuple[str, str]] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)
        if tag not in VOID:
            self.stack.append(tag)
        self.in_style = tag == "style"

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._attrs(tag, attrs)  # <line .../> inside SVG

    def handle_endtag(self, tag: str) -> None:
        self.in_style = False
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.in_style and re.search(r"url\(|@import", data):
            self.errors.append("CSS loads a resource")

    def _attrs(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag in ("link", "iframe", "object", "embed", "base"):
            self.errors.append(f"<{tag}> element")
        for key, value in attrs:
            value = value or ""
            if key == "id":
                self.ids.append(value)
            if key == "class":
                self.classes.append((tag, value))
            if key in URL_ATTRS:
                if re.match(r"\s*(https?:|//|ftp:|file:)", value, re.IGNORECASE):
                    self.errors.append(f"<{tag} {key}={value!r}> reaches the network")
                if tag == "script" and key == "src":
                    self.errors.append("external script")
                if key == "href":
                    self.links.append(value)
            if key.startswith("on"):
                self.errors.append(f"inline handler {key} on <{tag}>")


def check_html(text: str) -> StrictChecker:
    """Parse ``text`` strictly; assert it is well-formed and self-contained."""
    assert text.startswith("<!DOCTYPE html>")
    checker = StrictChecker()
    checker.feed(text)
    checker.close()
    assert not checker.errors, checker.errors[:10]
    assert checker.stack == [], f"unclosed: {checker.stack}"
    duplicates = {i for i in checker.ids if checker.ids.count(i) > 1}
    assert not duplicates, duplicates
    for link in checker.links:
        assert link.startswith("#"), link
        assert link[1:] in checker.ids, f"dangling link {link}"
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text, re.IGNORECASE)
    return checker


def n_histograms(checker: StrictChecker) -> int:
    return sum(1 for tag, cls in checker.classes if tag == "svg" and "hist" in cls.split())


def kernels_analysed(report: Report) -> int:
    # the engine identifies a scheme for each analysed kernel/recurrent/embedding tensor
    return sum(1 for fr in report.files for t in fr.tensors if t.scheme is not None)


@pytest.fixture(scope="module")
def samples_report() -> Report:
    return Report(files=[audit_path(p) for p in SAMPLE_FILES])


def test_sample_models_render_valid_self_contained_html(samples_report):
    assert len(SAMPLE_FILES) >= 10
    text = render(samples_report, config=AuditConfig())
    checker = check_html(text)
    assert n_histograms(checker) == kernels_analysed(samples_report) > 20
    # every finding is in the page, linked to its rule's page, which is rendered in the page
    for f in samples_report.findings:
        assert f'href="#rule-{f.name}"' in text
        assert f'id="rule-{f.name}"' in text
    assert checker.tags.get("script") == 1 and "signal" in {c for _, c in checker.classes}


def test_reporter_is_registered_and_writes_the_page(samples_report, tmp_path):
    from initaudit.cli import main

    out = tmp_path / "report.html"
    code = main([str(SAMPLES / "mlp_he_sigmoid.onnx"), "--format", "html", "--output", str(out)])
    assert code == 1  # the IA101 error still decides the exit code
    text = out.read_text(encoding="utf-8")
    checker = check_html(text)
    assert n_histograms(checker) == 2
    assert get_reporter("html") is not None
    # the card of fc1 shows fans, activation, observed vs expected std and the evidence
    card = text[text.index('<h4 id="f0-k0-n">fc1.weight</h4>'):]
    card = card[:card.index("</article>")]
    for needle in ("300 → 100", "sigmoid (graph)", "0.08201 / 0.08165", "KS/GOF p",
                   "He/Kaiming normal (fan_in)", "Glorot/Xavier normal (std 0.0707)",
                   "recommended by IA101", "IA101 he-before-saturating"):
        assert needle in card, needle


def test_he_before_sigmoid_draws_the_glorot_density_too(samples_report):
    fr = next(fr for fr in samples_report.files if fr.path.endswith("mlp_he_sigmoid.onnx"))
    fc1, fc2 = (t for t in fr.tensors if t.role == "kernel")
    c1 = curves_for(fc1, fr.findings)
    assert [c.role for c in c1] == ["identified", "suggested"]
    assert c1[0].std == pytest.approx(math.sqrt(2 / 300))
    assert c1[1].std == pytest.approx(math.sqrt(2 / 400)) and c1[1].source == "IA101"
    assert [c.role for c in curves_for(fc2, fr.findings)] == ["identified"]


def test_selu_with_glorot_draws_lecun_too(samples_report):
    fr = next(fr for fr in samples_report.files if fr.path.endswith("selu_glorot.onnx"))
    flagged = {f.tensor for f in fr.findings if f.name == "selu-without-lecun"}
    assert flagged
    for t in fr.tensors:
        if t.name in flagged:
            curves = curves_for(t, fr.findings)
            assert curves[0].role == "identified" and "Glorot" in curves[0].label
            assert curves[1].label.startswith("LeCun normal")
            assert curves[1].std == pytest.approx(math.sqrt(1 / t.fan_in))


@pytest.mark.parametrize("dist", ["normal", "truncated_normal", "uniform", "orthogonal"])
def test_densities_integrate_to_one_with_the_realised_std(dist):
    std = 0.05
    x = np.linspace(-1, 1, 400_001)
    p = pdf(x, dist, std)
    dx = x[1] - x[0]
    assert float(p.sum() * dx) == pytest.approx(1.0, abs=2e-3)
    assert math.sqrt(float((x * x * p).sum() * dx)) == pytest.approx(std, rel=2e-3)
    if dist == "truncated_normal":  # support is ±2σ of the underlying normal
        edge = 2 * std / TN2_STD_FACTOR
        assert pdf(np.array([edge * 0.999]), dist, std)[0] > 0
        assert pdf(np.array([edge * 1.001]), dist, std)[0] == 0


def test_sample_is_reproducible_and_finite():
    values = np.random.default_rng(1).normal(size=(300, 100)).astype(np.float32)
    values[0, :5] = np.nan
    a, b = sample_values(values, n=1000, seed=3), sample_values(values, n=1000, seed=3)
    assert np.array_equal(a, b) and np.isfinite(a).all() and a.size <= 1000
    assert not np.array_equal(a, sample_values(values, n=1000, seed=4))


def test_markdown_subset_escapes_everything_and_never_links_out():
    html = render_markdown("# T <b>\n\nText <script>alert(1)</script> [doc](https://x.org/a) "
                           "[here](#rule-x) `a<b` **bold** *it*\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
                           "\n```\n<img src=x>\n```\n\n- one\n- two\n")
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert 'href="https' not in html and "doc (https://x.org/a)" in html
    assert '<a href="#rule-x">here</a>' in html
    for needle in ("<code>a&lt;b</code>", "<strong>bold</strong>", "<em>it</em>", "<table>",
                   "<td>2</td>", "<li>two</li>", "&lt;img src=x&gt;"):
        assert needle in html, needle


def test_block_key_groups_repeated_blocks_only():
    assert block_key("encoder.layer.3.attention.self.query.weight") == \
        "encoder.layer.*.attention.self.query.weight"
    assert block_key("h.11.mlp.c_fc.weight") == "h.*.mlp.c_fc.weight"
    assert block_key("fc1.weight") == "fc1.weight"


@pytest.mark.frameworks
def test_hugging_face_model_renders_with_grouped_blocks(tmp_path):
    text, report = hf_report(tmp_path)
    checker = check_html(text)
    assert n_histograms(checker) == kernels_analysed(report) > 10
    assert text.count('<details class="group"') >= 6  # query/key/value/... of 2 layers folded
    assert "<code>encoder.layer.*.attention.self.query.weight</code>" in text


def import_transformers():
    """transformers, or skip. The torchvision wheel in some environments is CUDA-linked and fails
    to register its ops on a CPU-only machine, which makes transformers refuse to import its
    models: define the missing op names (never called here) and import again."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    for _ in range(5):
        try:
            import torchvision  # noqa: F401
            break
        except ImportError:
            break  # no torchvision at all: transformers works without it
        except RuntimeError as exc:
            missing = re.search(r"operator (torchvision::\w+) does not exist", str(exc))
            if not missing:
                pytest.skip(f"torchvision cannot be imported: {exc}")
            for key in [k for k in sys.modules if k.startswith("torchvision")]:
                del sys.modules[key]
            torch.library.define(missing.group(1),
                                 "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import transformers

    return transformers


def hf_report(tmp_path: Path) -> tuple[str, Report]:
    """A tiny BERT written by transformers' save_pretrained, audited and rendered."""
    transformers = import_transformers()
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=120,
                                     max_position_embeddings=32)
    transformers.BertModel(config).save_pretrained(tmp_path / "bert")
    report = Report(files=[audit_path(tmp_path / "bert" / "model.safetensors")])
    assert report.files[0].status.value != "error", report.files[0].error
    return render(report, config=AuditConfig()), report


def test_unreadable_file_and_missing_values_still_render(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    fr = audit_path(SAMPLES / "mlp_relu_clean.onnx")
    copy = tmp_path / "gone.onnx"
    copy.write_bytes((SAMPLES / "mlp_relu_clean.onnx").read_bytes())
    moved = audit_path(copy)
    copy.unlink()  # the values cannot be re-read: the card says so instead of a histogram
    text = render(Report(files=[audit_path(bad), fr, moved]))
    checker = check_html(text)
    assert "could not be read" in text and "No histogram: could not re-read the file" in text
    assert n_histograms(checker) == kernels_analysed(Report(files=[fr]))


def test_curve_labels_are_escaped():
    from initaudit.reporters._svg import histogram_svg

    svg = histogram_svg(np.linspace(-1, 1, 5), np.ones(4) / 2,
                        [Curve(label="<x>", distribution="normal", std=0.3, role="identified")],
                        title="<t>", desc="<d>", ident="z")
    assert "<x>" not in svg and "&lt;x&gt;" in svg and "&lt;t&gt;" in svg


@pytest.mark.frameworks
def test_probe_measurement_is_drawn_next_to_the_prediction():
    pytest.importorskip("onnxruntime")
    from initaudit.engine import audit_file

    fr = audit_file(SAMPLES / "deep_glorot_relu.onnx", AuditConfig(probe=True))
    measured = [e for e in fr.signal["layers"] if e.get("measured_std") is not None]
    assert measured
    text = render(Report(files=[fr]))
    check_html(text)
    assert text.count("<title>measured ") == len(measured)
    assert text.count("<title>predicted ") == len(fr.signal["layers"])
    assert "measured with --probe (squares)" in text
    # the signal-propagation finding (layer-level, no tensor) links to its layer's card
    finding = next(f for f in fr.findings if f.code == "IA601")
    assert finding.tensor is None
    item = text[text.index('<li class="finding" data-filter data-sev="warning"'):]
    assert '<a href="#f0-k' in item[:item.index("</li>")]


def test_hostile_tensor_names_are_text_not_markup(tmp_path):
    """Names come from the file: a name made of markup stays text in every place it appears
    (card title, data-name attribute, figure title, findings)."""
    name = 'x"><img src=x onerror=alert(1)><script>alert(2)</script>.weight'
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "evil.npz", **{name: rng.normal(0, 1.0, (64, 64)).astype(np.float32)})
    report = Report(files=[audit_path(tmp_path / "evil.npz")])
    assert report.files[0].tensors, report.files[0].error
    text = render(report)
    checker = check_html(text)
    assert "img" not in checker.tags and checker.tags.get("script") == 1
    assert "&lt;script&gt;alert(2)" in text
    assert n_histograms(checker) == kernels_analysed(report) == 1  # its card was drawn too
