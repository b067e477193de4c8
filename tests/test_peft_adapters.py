"""PEFT adapters written by peft itself: every factor recognised with its documented init."""

from __future__ import annotations

from pathlib import Path

import pytest

from initaudit.engine import audit_path
from initaudit.loaders import load
from initaudit.model import Role

pytestmark = pytest.mark.frameworks
torch = pytest.importorskip("torch")
for _op in ("nms", "qnms"):  # torchvision 0.28 here is CUDA-linked; peft imports transformers
    try:
        torch.library.define(f"torchvision::{_op}",
                             "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    except RuntimeError:
        pass
peft = pytest.importorskip("peft")
nn = torch.nn


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.q = nn.Linear(32, 32)
        self.fc = nn.Linear(32, 64)
        self.out = nn.Linear(64, 8)

    def forward(self, x):
        return self.out(torch.relu(self.fc(self.q(x))))


CONFIGS = {
    "lora": lambda: peft.LoraConfig(r=4, target_modules=["q", "fc"]),
    "loha": lambda: peft.LoHaConfig(r=4, target_modules=["q", "fc"]),
    "lokr": lambda: peft.LoKrConfig(r=4, target_modules=["q", "fc"]),
    "vera": lambda: peft.VeraConfig(r=4, target_modules=["q"]),
    "ia3": lambda: peft.IA3Config(target_modules=["q", "fc"], feedforward_modules=["fc"]),
}
# factors peft initialises at random (analysed as kernels) / constant by design (noted)
RANDOM = {"lora": {"lora_A"}, "loha": {"hada_w1_a", "hada_w1_b", "hada_w2_a"},
          "lokr": {"lokr_w2"}, "vera": {"vera_A", "vera_B"}, "ia3": set()}
CONSTANT = {"lora": set(), "loha": {"hada_w2_b"}, "lokr": {"lokr_w1"},
            "vera": {"vera_lambda_b", "vera_lambda_d"}, "ia3": {"ia3_l"}}


@pytest.mark.parametrize("method", sorted(CONFIGS))
def test_peft_factors_have_roles_and_documented_init(tmp_path: Path, method: str) -> None:
    torch.manual_seed(0)
    model = peft.get_peft_model(Tiny(), CONFIGS[method]())
    model.save_pretrained(tmp_path / method)
    loaded = load(tmp_path / method)
    by_leaf: dict[str, list] = {}
    for t in loaded.tensors():
        leaf = t.name.removesuffix(".weight").rpartition(".")[2]
        by_leaf.setdefault(leaf, []).append(t)
    assert RANDOM[method] | CONSTANT[method] <= set(by_leaf), sorted(by_leaf)
    for leaf in RANDOM[method]:
        for t in by_leaf[leaf]:
            assert t.role is Role.KERNEL and t.fan_in == t.shape[1], (t.name, t.role)
            assert any("PEFT" in n for n in t.notes)
    for leaf in CONSTANT[method]:
        for t in by_leaf[leaf]:
            assert t.role is Role.OTHER and any("initialised by" in n for n in t.notes), t.name
    report = audit_path(tmp_path / method)
    assert report.status.value == "ok", report.skipped
    # fresh adapters are initialised as documented: no init finding on any factor
    assert not [f for f in report.findings if f.severity.value == "error"], \
        [f.to_dict() for f in report.findings]
    assert any("PEFT adapter factors" in n for n in report.notes)
