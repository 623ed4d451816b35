"""`edgewise models list`: every zoo model with its description and defaults."""

from edgewise import models
from edgewise.cli.app import run_app


def test_models_list_shows_every_model_with_defaults(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert run_app(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in models.list_models():
        row = next(line for line in lines if line.startswith(f"│ {name} "))
        assert models.describe(name) in row
    assert any("resnet" in line and "depth=8" in line for line in lines)
    assert any("mobilenetv2" in line and " - " in line for line in lines)
