"""`edgewise finetune`: pretrains, fine-tunes within the budget, prints the measured table,
keeps the source model and the result; a bad method or an impossible budget is one line."""

import json

import pytest

from edgewise.cli.app import run_app
from edgewise.ondevice.finetune import load_source

TINY = ["--model", "resnet", "--width", "0.25", "--data", "synthetic", "--limit", "48",
        "--epochs", "1", "--pretrain-epochs", "1", "--device", "cpu", "--threads", "1"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = run_app(["finetune", *args])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_finetune_prints_the_table_and_writes_the_run_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "--method", "trady", "--budget-kb", "40", *TINY, "--name", "t",
                         "--with-vanilla", "--param", "coverage=0.9")
    assert code == 0, err
    for column in ("saved kB", "grads kB", "ms/step", "test acc %", "saved x less", "time ratio"):
        assert column in out
    run_dir = tmp_path / "runs" / "t"
    result = json.loads((run_dir / "result.json").read_text())["payload"]
    trady, vanilla = result["results"]
    assert (trady["method"], vanilla["method"]) == ("trady", "vanilla")
    assert trady["budgeted"] <= 40_000 < vanilla["budgeted"]
    load_source(run_dir / "source.safetensors")
    code, out, err = run(capsys, "--method", "bias-only", *TINY, "--name", "again",
                         "--source", str(run_dir / "source.safetensors"))
    assert code == 0, err
    assert "Pretraining" not in out


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "tardy"], "Unknown fine-tuning method 'tardy'. Did you mean 'trady'?"),
    (["--method", "trady", "--budget-kb", "0.5"], "cannot hold even the head"),
    (["--method", "trady", "--budget-kb", "-1"], "The 'kb' parameter of Budget must be > 0. Got -1.0."),
    (["--method", "asi", "--layers", "classifier.fx"], "Did you mean 'classifier.fc'?"),
    (["--method", "full", "--grad-clip", "-2"], "The 'grad_clip' parameter of finetune must be None or > 0."),
])
def test_mistakes_are_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *args, *TINY)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_svd_with_a_budget_runs_with_a_note_and_is_held_to_it(tmp_path, monkeypatch, capsys):
    # svd picks ranks by explained variance: the budget is not handed to it (it rejects one),
    # but is checked at every step
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "--method", "svd", "--budget-kb", "256", "--layers", "2", *TINY)
    assert code == 0, err
    assert "note: svd picks its ranks by explained variance" in out
    result = json.loads((tmp_path / "runs" / "finetune-resnet-synthetic-svd" / "result.json")
                        .read_text())["payload"]
    assert result["results"][0]["budgeted"] <= 256_000
    code, out, err = run(capsys, "--method", "hosvd", "--budget-kb", "3", "--layers", "2", *TINY)
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # after the progress bar
    assert len(errors) == 1 and "over the budget of 3 kB" in errors[0]
