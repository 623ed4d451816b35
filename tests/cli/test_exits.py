"""`edgewise exits train | eval | infer` end to end on a tiny synthetic set."""

from __future__ import annotations

import json

import pytest
import torch

from edgewise.cli.app import run_app
from edgewise.cli.exits import parse_exits
from edgewise.errors import ParameterError

TINY = ["--data", "synthetic", "--limit", "200", "--width", "0.25"]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny convolutions: on a busy 2-core machine two threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_parse_exits():
    assert parse_exits("layer1, layer2.0") == ["layer1", "layer2.0"]
    assert parse_exits("0.25,0.5") == [0.25, 0.5]
    with pytest.raises(ParameterError, match="mixes names and fractions"):
        parse_exits("layer1,0.5")


def test_train_eval_infer(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_app(["exits", "train", "resnet", *TINY, "--exits", "layer1,layer2",
                    "--epochs", "1", "--name", "tiny", "--budget", "0.8"]) == 0
    out = capsys.readouterr().out
    assert "layer1" in out and "oracle" in out
    run = tmp_path / "runs" / "tiny"
    for name in ("network.safetensors", "network.json", "result.json", "frontier.png"):
        assert (run / name).is_file()
    result = json.loads((run / "result.json").read_text())["payload"]
    assert result["evaluation"]["policy"]["info"]["budget"] == 0.8
    assert run_app(["exits", "eval", str(run / "network.safetensors"), "--data", "synthetic",
                    "--limit", "200"]) == 0
    assert (run / "eval.json").is_file()
    assert run_app(["exits", "infer", str(run / "network.safetensors"), "--data", "synthetic",
                    "--images", "64", "--batch-size", "32", "--repeats", "2"]) == 0
    assert "speed-up measured" in capsys.readouterr().out


def test_user_mistakes_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        run_app(["exits", "train", "resnet", *TINY, "--strategy", "jont"])
    assert info.value.code == 2
    assert "Did you mean 'joint'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_app(["exits", "train", "resnet", *TINY, "--exits", "layer9"])
    assert "No valid cut after 'layer9'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_app(["exits", "eval", str(tmp_path / "missing.safetensors"), "--data", "synthetic"])
    assert "No checkpoint" in capsys.readouterr().err
