"""Configuration files: discovery upward, precedence, validation messages, the engine config."""

from __future__ import annotations

from pathlib import Path

import pytest

from initaudit.config import (
    COMMAND_LINE,
    ConfigError,
    PathTensorIgnore,
    find_config_file,
    load_file,
    load_settings,
)
from initaudit.report import Finding, Severity


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_search_goes_upward_and_skips_pyprojects_without_our_table(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.initaudit]\nfail-on = "info"\n')
    write(tmp_path / "a" / "pyproject.toml", '[tool.ruff]\nline-length = 100\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir()
    assert find_config_file(deep) == (tmp_path / "pyproject.toml").resolve()
    write(tmp_path / "a" / "initaudit.toml", 'fail-on = "warning"\n')
    assert find_config_file(deep) == (tmp_path / "a" / "initaudit.toml").resolve()


def test_own_file_beats_pyproject_in_the_same_folder(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.initaudit]\nfail-on = "info"\n')
    write(tmp_path / "initaudit.toml", 'fail-on = "warning"\n')
    assert find_config_file(tmp_path).name == "initaudit.toml"


def test_every_key_is_read_and_normalised(tmp_path):
    cfg = write(tmp_path / "initaudit.toml", """
select = ["ia1", "constant-weights"]
extend-select = ["IA301"]
ignore = ["IA102"]
fail-on = "Warning"
min-confidence = 0.5
severity = { "nonzero-mean" = "info", IA103 = "error" }
activation = ["encoder.*=gelu"]
include = ["*.onnx"]
exclude = ["legacy/**"]
jobs = 3
format = "json"

[[per-tensor-ignores]]
pattern = "embed*"
rules = ["IA2"]
reason = "pretrained table"
""")
    s = load_settings(str(cfg))
    assert s.select == ("IA1", "constant-weights") and s.effective_select() == ("IA1", "constant-weights", "IA301")
    assert s.fail_on is Severity.WARNING and s.min_confidence == 0.5 and s.jobs == 3 and s.format == "json"
    assert s.severity == {"IA303": Severity.INFO, "IA103": Severity.ERROR}
    ig = s.per_tensor_ignores[0]
    from initaudit.rules import registry

    family = tuple(code for code in registry() if code.startswith("IA2"))  # a prefix expands
    assert "IA201" in family and ig.rules == family and ig.reason == "pretrained table"
    config = s.audit_config()
    assert config.ignore == ("IA102",) and config.hints[0].pattern == "encoder.*"
    assert config.severity_overrides["IA303"] is Severity.INFO
    assert s.source("jobs") == "initaudit.toml" or s.source("jobs").endswith("initaudit.toml")
    assert s.source("extend-ignore") == "default"


def test_command_line_overrides_the_file_and_hints_add_up(tmp_path):
    cfg = write(tmp_path / "initaudit.toml", 'fail-on = "info"\nactivation = {"fc*" = "relu"}\n')
    s = load_settings(str(cfg), {"fail-on": Severity.ERROR, "activation": ("fc2=tanh",), "jobs": None})
    assert s.fail_on is Severity.ERROR and s.source("fail-on") == COMMAND_LINE
    assert s.activation == ("fc*=relu", "fc2=tanh")  # the command line's come last: they win
    assert s.source("activation").endswith(f"+ {COMMAND_LINE}")
    assert s.source("jobs") == "default"


@pytest.mark.parametrize("body, message", [
    ('selct = ["IA1"]', "selct: unknown key (did you mean 'select'?)"),
    ('select = "IA1"', "select: expected an array of strings, got a string"),
    ('ignore = ["no-such-rule"]', "ignore: unknown rule 'no-such-rule'"),
    ('fail-on = "fatal"', "fail-on: unknown severity 'fatal'"),
    ('min-confidence = 2', "min-confidence: must be between 0 and 1"),
    ('min-confidence = true', "min-confidence: expected a number between 0 and 1, got a boolean"),
    ('severity = { IA999 = "info" }', "severity: unknown rule 'IA999'"),
    ('severity = { IA101 = "loud" }', "severity.IA101: unknown severity 'loud'"),
    ('activation = { "fc*" = "wiggle" }', "activation: unknown activation 'wiggle'"),
    ('jobs = -1', "jobs: must be 0 or more"),
    ('jobs = "4"', "jobs: expected an integer"),
    ('format = "xml"', "format: unknown format 'xml'"),
    ('[[tool.initaudit.per-tensor-ignores]]\npattern = "x"\nreason = ""', "per-tensor-ignores[0]: 'reason' must not be empty"),
    ('[[tool.initaudit.per-tensor-ignores]]\nrules = ["IA1"]\nreason = "r"', "per-tensor-ignores[0]: 'pattern' is required"),
    ('[[tool.initaudit.per-tensor-ignores]]\npattern = "x"\nreason = "r"\nrules = ["IA9"]',
     "per-tensor-ignores[0].rules: unknown rule 'IA9'"),
    ('[[tool.initaudit.per-tensor-ignores]]\npattern = "x"\nreason = "r"\nwhy = 1',
     "per-tensor-ignores[0]: unknown key 'why'"),
    ('per-tensor-ignores = ["x"]', "per-tensor-ignores[0]: expected a table"),
])
def test_mistakes_name_the_file_the_key_and_the_problem(tmp_path, monkeypatch, body, message):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "pyproject.toml", "[tool.initaudit]\n" + body + "\n")
    with pytest.raises(ConfigError) as info:
        load_file(tmp_path / "pyproject.toml")
    text = str(info.value)
    assert text.startswith(f"pyproject.toml: [tool.initaudit] {message}"), text
    assert "\n" not in text


def test_own_file_messages_and_toml_syntax(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "initaudit.toml", 'select = ["IA1"\n')
    with pytest.raises(ConfigError, match=r"^initaudit.toml: invalid TOML: "):
        load_file(tmp_path / "initaudit.toml")
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(str(tmp_path / "missing.toml"))


def test_path_scoped_ignore_matches_paths_relative_to_the_config(tmp_path, monkeypatch):
    ig = PathTensorIgnore(pattern="fc1.*", rules=("IA201",), reason="r", path="models/*.onnx",
                          base_dir=str(tmp_path))
    finding = Finding(code="IA201", name="constant-weights", severity=Severity.ERROR, confidence=1.0,
                      message="m", tensor="fc1.weight", layer="fc1")
    monkeypatch.chdir(tmp_path)
    assert ig.applies(finding, "models/a.onnx")
    assert ig.applies(finding, str(tmp_path / "models" / "a.onnx"))  # absolute: relative to config
    (tmp_path / "models").mkdir()
    monkeypatch.chdir(tmp_path / "models")
    assert ig.applies(finding, "a.onnx")  # typed from inside models/
    assert not ig.applies(finding, "../other/a.onnx")
    assert not ig.applies(Finding(**{**finding.__dict__, "code": "IA101"}), "a.onnx")
