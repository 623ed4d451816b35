"""The fine-tuning runner: budgets are kept or fail loudly, full selection trains exactly as
vanilla, and the transfer tasks split the classes."""

import pytest
import torch

from edgewise.engine import TrainConfig
from edgewise.errors import BudgetError, ParameterError, UnknownNameError
from edgewise.ondevice import FinetuneConfig, finetune, method_kind, pretrain, transfer_task
from edgewise.ondevice.finetune import budget_note, load_source, save_source


@pytest.fixture(scope="module")
def task_and_source():
    task = transfer_task("synthetic", limit=48, n=300, shape=(1, 12, 12))
    source = pretrain("resnet", task.source, width=0.25,
                      config=TrainConfig(epochs=1, batch_size=32, device="cpu", threads=1))
    return task, source


def quick(method, **options):
    return FinetuneConfig(method=method, epochs=2, timing_repeats=2, threads=1, **options)


def test_the_task_splits_the_classes(task_and_source):
    task, _ = task_and_source
    assert task.source.num_classes == task.target.num_classes == 5
    assert len(task.target.train) == 48


@pytest.mark.parametrize("method", ["trady", "medyate", "random", "neq-budget"])
def test_a_budgeted_method_never_exceeds_the_budget(task_and_source, method):
    task, source = task_and_source
    result = finetune(source, task.target, quick(method, budget_kb=25))
    assert 0 < result.budgeted <= 25_000
    assert all(row["peak_budgeted_bytes"] <= 25_000 for row in result.history)
    assert all(row["trained_channels"] > 0 for row in result.history)


def test_a_method_that_ignores_the_budget_fails_loudly_at_the_first_step(task_and_source):
    task, source = task_and_source
    with pytest.raises(BudgetError, match="Training step 1 holds .* over the budget of 25 kB"):
        finetune(source, task.target, quick("full", budget_kb=25))


def test_an_impossible_budget_is_a_clear_error(task_and_source):
    task, source = task_and_source
    with pytest.raises(BudgetError, match="cannot hold even the head"):
        finetune(source, task.target, quick("trady", budget_kb=0.1))


def test_full_selection_trains_exactly_as_vanilla(task_and_source):
    task, source = task_and_source
    vanilla = finetune(source, task.target, quick("vanilla"))
    full = finetune(source, task.target, quick("full"))
    for a, b in zip(vanilla.history, full.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert full.accuracy == vanilla.accuracy
    assert full.gradients == vanilla.gradients
    assert full.activations < vanilla.activations  # one-bit masks instead of float outputs


def test_a_compressor_is_a_method_too(task_and_source):
    task, source = task_and_source
    vanilla = finetune(source, task.target, quick("vanilla"))
    asi = finetune(source, task.target, quick("asi", layers=2))
    assert asi.kind == "compression" and asi.activations < vanilla.activations


def test_a_compressor_wraps_the_layers_named(task_and_source):
    task, source = task_and_source
    result = finetune(source, task.target, quick("asi", layers=("classifier.fc",)))
    features = source.classifier.fc.in_features
    # only the new head trains: its weight and bias gradients, in float32
    assert result.gradients == 4 * (features * task.target.num_classes + task.target.num_classes)
    with pytest.raises(ParameterError, match="'layers' parameter of finetune must be an int >= 1 or"):
        quick("asi", layers=())


@pytest.mark.parametrize("method", ["svd", "hosvd"])
def test_a_budget_is_only_checked_for_a_compressor_that_cannot_plan_for_one(task_and_source, method):
    # svd and hosvd pick their ranks by explained variance: the runner must not hand them a
    # budget_bytes (which they reject), but still hold every step to the budget
    task, source = task_and_source
    config = quick(method, budget_kb=256, layers=2)
    assert "explained variance" in budget_note(config) and "256 kB" in budget_note(config)
    result = finetune(source, task.target, config)
    assert 0 < result.budgeted <= 256_000
    assert all(row["peak_budgeted_bytes"] <= 256_000 for row in result.history)
    with pytest.raises(BudgetError, match="Training step 1 holds .* over the budget of 1 kB"):
        finetune(source, task.target, quick(method, budget_kb=1, layers=2))


def test_an_explicit_budget_bytes_for_svd_is_refused_in_one_line(task_and_source):
    task, source = task_and_source
    with pytest.raises(ParameterError, match="'budget_bytes' parameter of svd must be None"):
        finetune(source, task.target, quick("svd", params={"budget_bytes": 1000}))


def test_budget_notes_only_for_compressors_without_a_budget():
    assert budget_note(quick("svd")) is None  # no budget, nothing to say
    assert all(budget_note(quick(m, budget_kb=256)) is None for m in ("asi", "wasi", "trady", "vanilla"))


def test_method_names_are_checked_in_one_place():
    assert [method_kind(m) for m in ("vanilla", "trady", "asi")] == ["vanilla", "selection", "compression"]
    with pytest.raises(UnknownNameError, match="Valid names: asi, bias-only, full, hosvd"):
        method_kind("sgd")


def test_the_source_model_round_trips(task_and_source, tmp_path):
    _, source = task_and_source
    path = save_source(tmp_path / "source", source)
    again = load_source(path)
    x = torch.randn(2, 1, 12, 12)
    torch.testing.assert_close(again(x), source(x))
