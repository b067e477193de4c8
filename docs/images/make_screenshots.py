"""Regenerate the screenshots in docs/images (needs chromium on PATH):

    python docs/images/make_screenshots.py

- html-report.png: ``initaudit sample_models/mlp_he_sigmoid.onnx --format html`` in headless
  Chromium;
- inspect-plot.png: ``initaudit inspect sample_models/mlp_he_sigmoid.onnx --layer fc1 --plot``
  in colour, recorded by rich as SVG and rendered by Chromium;
- diff-report.png: ``initaudit diff`` of a torch MLP before/after 5 SGD steps with a frozen and
  a dead layer, as HTML.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT))
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def shoot(page: Path, png: Path, size: str, tmp: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not on PATH")
    subprocess.run([chromium, *FLAGS, f"--user-data-dir={tmp / ('p-' + png.stem)}",
                    f"--window-size={size}", f"--screenshot={png}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    # a 64-colour palette keeps each picture well under 200 KB (Pillow comes with torchvision)
    try:
        from PIL import Image

        Image.open(png).convert("RGB").quantize(colors=64).save(png, optimize=True)
    except ImportError:
        pass
    print(f"{png.relative_to(ROOT)}: {png.stat().st_size} bytes")


def main() -> None:
    from rich.console import Console
    from rich.text import Text

    from initaudit.cli import main as cli

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        os.chdir(ROOT)  # paths in the pictures are relative, as a user would type them
        sample = "sample_models/mlp_he_sigmoid.onnx"
        page = tmp / "report.html"
        cli([sample, "--format", "html", "--output", str(page)])
        shoot(page, OUT / "html-report.png", "1100,1500", tmp)

        buffer = io.StringIO()
        os.environ["FORCE_COLOR"] = "1"
        real_stdout, sys.stdout = sys.stdout, buffer
        try:
            cli(["inspect", sample, "--layer", "fc1", "--plot"])
        finally:
            sys.stdout = real_stdout
        console = Console(record=True, width=118, file=io.StringIO(), force_terminal=True)
        console.print(Text("$ initaudit inspect sample_models/mlp_he_sigmoid.onnx --layer fc1 --plot",
                           style="bold"))
        console.print(Text.from_ansi(buffer.getvalue()))
        svg = tmp / "plot.svg"
        svg.write_text(console.export_svg(title="initaudit inspect --plot"), encoding="utf-8")
        shoot(svg, OUT / "inspect-plot.png", "1460,820", tmp)

        import torch

        torch.manual_seed(0)
        nn = torch.nn
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                              nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
        with torch.no_grad():
            model[2].bias.fill_(-100.0)
        for p in model[0].parameters():
            p.requires_grad_(False)
        torch.save(model.state_dict(), tmp / "fresh.pt")
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.05)
        for _ in range(5):
            loss = ((model(torch.randn(64, 16)) - torch.randn(64, 4)) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        torch.save(model.state_dict(), tmp / "trained.pt")
        page = tmp / "diff.html"
        cli(["diff", str(tmp / "fresh.pt"), str(tmp / "trained.pt"), "-f", "html", "-o", str(page)])
        shoot(page, OUT / "diff-report.png", "1000,1000", tmp)


if __name__ == "__main__":
    main()
