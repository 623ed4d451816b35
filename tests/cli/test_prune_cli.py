"""`edgewise prune METHOD` and `edgewise prune fold`: run folders, loadable outputs, clear errors."""

import json

import torch

from edgewise import data, engine, models
from edgewise.cli.app import run_app
from edgewise.prune.io import load_folded, load_pruned


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = run_app(["prune", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def trained_checkpoint(tmp_path):
    torch.set_num_threads(1)
    splits = data.load("synthetic", limit=100)
    engine.seed_everything(0)
    model = models.build("resnet", splits.num_classes, splits.input_shape, width=0.25)
    engine.fit(model, splits, engine.TrainConfig(epochs=1, batch_size=32), progress=False)
    return engine.save_checkpoint(tmp_path / "model", model.state_dict(),
                                  {"spec": models.spec_of(model)})


def test_tlc_writes_a_run_folder_whose_folded_model_matches(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    checkpoint = trained_checkpoint(tmp_path)
    code, out, err = run(capsys, "tlc", "--model", str(checkpoint), "--data", "synthetic",
                         "--limit", "200", "--rounds", "1", "--repeats", "3", "--name", "t")
    assert code == 0, err
    assert "rectifier layers removed" in out and "latency, batch 1" in out
    run_dir = tmp_path / "runs" / "t"
    result = json.loads((run_dir / "result.json").read_text())["payload"]
    assert result["rectifiers_removed"] >= 1 and result["max_abs_difference"] < 1e-4
    assert (run_dir / "entropy.png").stat().st_size > 0
    pruned, _ = load_pruned(run_dir / "pruned.safetensors")
    folded, _ = load_folded(run_dir / "folded.safetensors")
    x = torch.randn(4, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(folded(x), pruned(x), atol=1e-4)


def test_fold_command_writes_a_folded_network(tmp_path, capsys):
    checkpoint = trained_checkpoint(tmp_path)
    code, out, err = run(capsys, "fold", str(checkpoint), "--out", str(tmp_path / "f"))
    assert code == 0, err
    assert "merges applied" in out
    folded, meta = load_folded(tmp_path / "f.safetensors")
    assert meta["input_shape"] == [1, 16, 16]


def test_mistakes_are_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, "fold", str(tmp_path / "missing.safetensors"))
    assert code == 2 and "No checkpoint" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "egp", "--model", "resnet", "--data", "synthetic",
                       "--param", "nope=1")
    assert code == 2 and "--param takes KEY=VALUE" in err
    code, _, err = run(capsys, "egp", "--model", "resnet", "--data", "synthetic", "--rounds", "0")
    assert code == 2 and "The 'rounds' parameter of egp must be >= 1. Got 0." in err
