"""`edgewise cost MODEL --data NAME`: a per-layer table with totals; mistakes are one line, exit 2."""

import pytest
import torch

from edgewise import cost, models
from edgewise.cli.app import run_app

SYNTHETIC = (1, 16, 16)  # the synthetic set's default image shape


def totals_row(output: str) -> list[str]:
    row = next(line for line in output.splitlines() if line.startswith("│ total"))
    return [cell.strip() for cell in row.strip("│").split("│")]


@pytest.mark.parametrize(
    ("arguments", "name", "kwargs"),
    [(["resnet"], "resnet", {}), (["resnet", "--depth", "18", "--width", "0.25"], "resnet",
                                  {"depth": 18, "width": 0.25})],
)
def test_totals_match_the_library(arguments, name, kwargs, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    assert run_app(["cost", *arguments, "--data", "synthetic", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    model = models.build(name, 10, SYNTHETIC, **kwargs)
    macs = cost.count_macs(model, torch.zeros(1, *SYNTHETIC))
    _, _, mac_cell, params_cell, analytic_cell, measured_cell = totals_row(out)
    assert mac_cell == f"{macs.total / 1e6:,.3f} M"
    assert params_cell == str(macs.params_total)
    analytic = sum(cost.analytic_activation_bytes(model, torch.zeros(4, *SYNTHETIC)).values())
    assert analytic_cell == f"{analytic / 2**20:,.3f} MiB"
    assert measured_cell.endswith(" MiB") and float(measured_cell.split()[0]) > 0
    for layer in ("stem.conv", "layer1.0.relu2", "classifier.fc"):
        assert f"│ {layer} " in out
    assert "batch of 4" in out


@pytest.mark.parametrize(
    ("arguments", "message"),
    [(["cost", "resnett", "--data", "synthetic"], "Did you mean 'resnet'"),
     (["cost", "mobilenetv2", "--data", "synthetic", "--depth", "3"], "no parameter 'depth'"),
     (["cost", "resnet", "--data", "no-such-data"], "Unknown dataset"),
     (["cost", "resnet", "--data", "synthetic", "--depth", "20"], "must be one of 8, 18. Got 20."),
     (["cost", "resnet"], "--data")],
)
def test_mistakes_are_one_line_and_exit_2(arguments, message, capsys):
    with pytest.raises(SystemExit) as info:
        run_app(arguments)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
