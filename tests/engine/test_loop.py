"""The training loop: it learns, is deterministic, writes its run folder, stops on NaN."""

import csv
import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from edgewise.engine import History, TrainConfig, TrainingDiverged, evaluate, fit
from edgewise.engine.loop import cross_entropy
from edgewise.errors import DataError, ParameterError, UserError
from tests.engine.train_worker import tiny_model, tiny_splits

FAST = dict(batch_size=32, lr=0.05, device="cpu", threads=1)


def test_evaluate_counts_like_a_hand_count():
    model = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(2))  # logits = inputs: predicts 0 when x0 > x1
    x = torch.tensor([[2.0, 0.0]] * 6 + [[0.0, 2.0]] * 4)
    y = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 0])  # 5 + 3 correct out of 10
    model.train()
    result = evaluate(model, TensorDataset(x, y), batch_size=3)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["loss"] == pytest.approx(F.cross_entropy(x, y).item())
    assert model.training  # the mode is given back
    with pytest.raises(DataError, match="empty"):
        evaluate(model, TensorDataset(x[:0], y[:0]))


def test_fit_learns_and_writes_the_run_folder(tmp_path):
    model = tiny_model(plain=False)
    config = TrainConfig(epochs=4, warmup_epochs=1, save_best=True, **FAST)
    history = fit(model, tiny_splits(), config, run_dir=tmp_path / "run", progress=False)
    assert isinstance(history, History) and history["epoch"] == [1, 2, 3, 4]
    assert (
        history.last["val_accuracy"] >= 0.7 and history["train_loss"][-1] < history["train_loss"][0]
    )
    # the validation numbers are those of evaluate on the final model
    assert history.last["val_loss"] == pytest.approx(evaluate(model, tiny_splits().val)["loss"])

    run = tmp_path / "run"
    assert json.loads((run / "config.json").read_text())["epochs"] == 4
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "lr",
        "seconds",
    }
    assert json.loads((run / "metrics.json").read_text()) == history.rows
    last = json.loads((run / "checkpoints" / "last.json").read_text())
    assert (last["epoch"], last["step"]) == (4, 4 * 8)
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["val_accuracy"] == max(history["val_accuracy"])


def test_same_seed_same_run_other_seed_other_run():
    def run(seed):
        model = tiny_model(plain=False)
        config = TrainConfig(epochs=2, seed=seed, augment=True, **FAST)
        rows = fit(model, tiny_splits(), config, progress=False).rows
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows], model.state_dict()

    (rows_a, weights_a), (rows_b, weights_b), (rows_c, _) = run(0), run(0), run(1)
    assert rows_a == rows_b and all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)
    assert rows_a != rows_c


def test_callbacks_see_the_state_and_add_metrics(tmp_path):
    calls = []

    class Recorder:
        def on_fit_start(self, state):
            calls.append(("fit_start", state.epoch))

        def on_epoch_start(self, state):
            calls.append(("epoch_start", state.epoch))

        def on_epoch_end(self, state):
            calls.append(("epoch_end", state.epoch, state.step, state.metrics[-1]["epoch"]))
            return {"weight_norm": state.model[0].weight.norm().item()}

        def on_fit_end(self, state):
            calls.append(("fit_end", len(state.metrics)))

    config = TrainConfig(epochs=2, **FAST)
    history = fit(
        tiny_model(True),
        tiny_splits(),
        config,
        run_dir=tmp_path,
        callbacks=[Recorder()],
        progress=False,
    )
    assert calls == [
        ("fit_start", 0),
        ("epoch_start", 0),
        ("epoch_end", 0, 8, 1),
        ("epoch_start", 1),
        ("epoch_end", 1, 16, 2),
        ("fit_end", 2),
    ]
    assert history.last["weight_norm"] > 0
    assert "weight_norm" in next(csv.DictReader((tmp_path / "metrics.csv").open()))


def test_only_the_given_parameters_train():
    model = tiny_model(plain=True)
    conv_before = model[0].weight.clone()
    head_before = model[-1].weight.clone()
    fit(
        model,
        tiny_splits(),
        TrainConfig(epochs=1, **FAST),
        parameters=model[-1].parameters(),
        progress=False,
    )
    assert torch.equal(model[0].weight, conv_before)
    assert not torch.equal(model[-1].weight, head_before)


@pytest.mark.parametrize("clip_factor", [0.25, 4.0])  # below and above the gradient's norm
def test_clipping_scales_the_step_to_the_clip_norm_as_a_hand_computed_one(clip_factor):
    splits = tiny_splits()
    model = tiny_model(plain=True)
    images, labels = splits.train.tensors
    F.cross_entropy(model(images), labels).backward()  # the one full-batch step's gradient, by hand
    before = [p.detach().clone() for p in model.parameters()]
    gradients = [p.grad.clone() for p in model.parameters()]
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in gradients])).item()
    clip, lr = clip_factor * norm, 0.5
    config = TrainConfig(epochs=1, batch_size=len(images), lr=lr, momentum=0.0, nesterov=False,
                         weight_decay=0.0, schedule="none", grad_clip=clip, device="cpu", threads=1)
    fit(model, SimpleNamespace(train=splits.train, val=TensorDataset(images[:0], labels[:0])), config,
        progress=False)
    scale = min(1.0, clip / norm)
    for p, start, g in zip(model.parameters(), before, gradients, strict=True):
        torch.testing.assert_close(p.detach(), start - lr * scale * g, rtol=1e-5, atol=1e-6)


def test_a_custom_loss_gets_the_state_and_drives_the_accuracy():
    seen = set()

    def loss_fn(net, images, labels, state):
        seen.add(state.epoch)
        logits = net(images)
        return F.cross_entropy(logits, labels), torch.zeros_like(logits).index_fill_(
            1, torch.tensor([1]), 1.0
        )

    splits = tiny_splits()
    history = fit(
        tiny_model(True), splits, TrainConfig(epochs=2, **FAST), loss_fn=loss_fn, progress=False
    )
    assert seen == {0, 1}
    ones = splits.train.tensors[1].float().mean().item()  # the accuracy of always answering 1
    assert history.last["train_accuracy"] == pytest.approx(ones, abs=0.1)


def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    kept = {}

    class Snapshot:
        def on_epoch_start(self, state):
            if state.epoch == 2:
                kept.update({p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()})

    def loss_fn(net, images, labels, state):
        loss, logits = cross_entropy(net, images, labels, state)
        return (loss * float("nan") if state.step == 2 * 8 + 4 else loss), logits

    with pytest.raises(TrainingDiverged) as info:
        fit(
            tiny_model(False),
            tiny_splits(),
            TrainConfig(epochs=4, **FAST),
            run_dir=tmp_path,
            loss_fn=loss_fn,
            callbacks=[Snapshot()],
            progress=False,
        )
    message = str(info.value)
    assert isinstance(info.value, UserError) and "\n" not in message
    assert "epoch 3, step 5" in message and "nan" in message and "last.safetensors" in message
    assert {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == kept
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["epoch"] == 2


def test_resume_refuses_another_model_or_config(tmp_path):
    splits = tiny_splits()
    fit(tiny_model(False), splits, TrainConfig(epochs=1, **FAST), run_dir=tmp_path, progress=False)
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    wider = tiny_model(False)
    wider[-1] = nn.Linear(4 * 64, 3)
    refusals = [
        (other, FAST, "does not match the model"),
        (wider, FAST, r"'5.bias' has shape \(2,\) there and \(3,\) in the model"),
        (tiny_model(False), FAST | {"lr": 0.1}, "trained with lr=0.05, not 0.1"),
    ]
    for model, options, message in refusals:
        with pytest.raises(UserError, match=message) as info:
            fit(model, splits, TrainConfig(epochs=1, **options), run_dir=tmp_path, resume=True,
                progress=False)
        assert "\n" not in str(info.value)
    with pytest.raises(ParameterError, match="needs the run_dir"):
        fit(tiny_model(False), splits, TrainConfig(epochs=1, **FAST), resume=True)


def test_resume_of_a_finished_run_trains_no_more(tmp_path):
    splits = tiny_splits()
    model = tiny_model(False)
    first = fit(model, splits, TrainConfig(epochs=2, **FAST), run_dir=tmp_path, progress=False)
    again = tiny_model(False)
    second = fit(
        again, splits, TrainConfig(epochs=2, **FAST), run_dir=tmp_path, resume=True, progress=False
    )
    assert second.rows == first.rows
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_any_dataset_of_pairs_works():
    class Pairs(torch.utils.data.Dataset):
        def __init__(self, base):
            self.base = base

        def __len__(self):
            return len(self.base)

        def __getitem__(self, i):
            return self.base[i]

    tensors = tiny_splits()
    splits = SimpleNamespace(train=Pairs(tensors.train), val=Pairs(tensors.val))
    a = fit(tiny_model(True), splits, TrainConfig(epochs=1, **FAST), progress=False).last
    b = fit(tiny_model(True), tensors, TrainConfig(epochs=1, **FAST), progress=False).last
    assert a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
