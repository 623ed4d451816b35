"""`edgewise train`: trains, tests, prints a table, and keeps the model in its run folder."""

import json

import pytest
import torch

from edgewise import data, engine, models
from edgewise.cli.app import run_app

TINY = [
    "--data",
    "synthetic",
    "--limit",
    "160",
    "--width",
    "0.25",
    "--batch-size",
    "32",
    "--device",
    "cpu",
]


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = run_app(["train", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_train_writes_a_run_folder_with_a_reloadable_model(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "convnet", *TINY, "--epochs", "2", "--name", "tiny")
    assert code == 0, err
    assert "test accuracy" in out and "MACs / image" in out and "seconds / epoch" in out
    run_dir = tmp_path / "runs" / "tiny"
    for name in (
        "config.json",
        "metrics.csv",
        "metrics.json",
        "checkpoints/last.safetensors",
        "model.safetensors",
        "model.json",
        "result.json",
        "accuracy.png",
    ):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["epochs"], config["optimizer"], config["schedule"], config["lr"]) == (
        2,
        "sgd",
        "onecycle",
        0.05,
    )

    weights, meta = engine.load_checkpoint(run_dir / "model.safetensors")
    model = models.from_spec(meta["spec"])
    model.load_state_dict(weights)
    splits = data.load("synthetic", limit=160)
    result = json.loads((run_dir / "result.json").read_text())
    assert result["kind"] == "train"
    assert engine.evaluate(model, splits.test)["accuracy"] == pytest.approx(
        result["payload"]["test_accuracy"]
    )
    assert result["payload"]["params"] == sum(p.numel() for p in model.parameters())
    assert f"{100 * result['payload']['test_accuracy']:.2f} %" in out


def test_an_existing_run_is_kept_unless_resumed(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "convnet", *TINY, "--epochs", "1", "--name", "r")[0] == 0
    metrics = (tmp_path / "runs" / "r" / "metrics.json").read_bytes()
    code, _, err = run(capsys, "convnet", *TINY, "--epochs", "1", "--name", "r")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--resume" in err
    assert (tmp_path / "runs" / "r" / "metrics.json").read_bytes() == metrics
    code, out, err = run(capsys, "convnet", *TINY, "--epochs", "1", "--name", "r", "--resume")
    assert code == 0, err
    assert (
        tmp_path / "runs" / "r" / "metrics.json"
    ).read_bytes() == metrics  # nothing left to train


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnt", "--data", "synthetic"], "Did you mean 'resnet'?"),
        (
            ["convnet", "--data", "synthetic", "--epochs", "0"],
            "The 'epochs' parameter of TrainConfig must be >= 1. Got 0.",
        ),
        (["convnet", "--data", "synthetic", "--optimizer", "sgdd"], "Unknown optimizer 'sgdd'"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *args)
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "convnet", "--data", "synthetic", "--device", "cuda")
    assert code == 2 and "no CUDA GPU" in err
