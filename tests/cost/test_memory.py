"""Saved activations against hand counts; training memory against closed forms."""

import pytest
import torch
from torch import nn

from edgewise import cost

FLOAT = 4  # bytes


def small_net():
    """conv(1->4) -> ReLU -> conv(4->4) -> flatten -> linear(256->3), for (N, 1, 8, 8) inputs."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.Flatten(), nn.Linear(256, 3))


def test_hand_count_of_a_small_net():
    x = torch.randn(2, 1, 8, 8)
    saved = cost.saved_activation_bytes(small_net(), x)
    image, feature = 2 * 1 * 64 * FLOAT, 2 * 4 * 64 * FLOAT
    # conv1 saves the input; ReLU its output, which conv2 saves again (counted once);
    # the linear layer saves the flattened view of conv2's output.
    assert saved.per_module == {"0": image, "1": feature, "2": 0, "3": 0, "4": feature}
    assert saved.total == image + 2 * feature


class TwoBranches(nn.Module):
    """ReLU output used by two convolutions: saved three times, one storage."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.left, self.right = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.relu(x)
        return self.left(y) + self.right(y)


def test_a_storage_used_twice_counts_once():
    x = torch.randn(3, 2, 5, 5, requires_grad=True)
    saved = cost.saved_activation_bytes(TwoBranches(), x)
    assert saved.total == x.nbytes
    assert saved.per_module == {"relu": x.nbytes, "left": 0, "right": 0}


class ViewAndClone(nn.Module):
    """A slice (a view) and a clone of the input, each multiplied by a parameter."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        part, copy = x[:, :1], x.clone()
        return (part * self.scale).sum() + (copy * self.scale).sum()


def test_a_view_counts_its_whole_storage_and_a_clone_its_own():
    x = torch.randn(2, 4, 8, 8)
    saved = cost.saved_activation_bytes(ViewAndClone(), x)
    assert saved.total == 2 * x.nbytes  # not x[:, :1].nbytes + x.nbytes


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("mask", torch.ones(1, 4))
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x) * self.mask


def test_parameters_and_buffers_are_not_activations():
    x = torch.randn(5, 4)
    saved = cost.saved_activation_bytes(Masked(), x)
    assert saved.total == x.nbytes  # the linear's input; not its weight, not the mask


def test_frozen_layers_save_less():
    model = small_net()
    model[0].requires_grad_(False)
    saved = cost.saved_activation_bytes(model, torch.randn(2, 1, 8, 8))
    feature = 2 * 4 * 64 * FLOAT
    # conv1 and the ReLU need no gradient; conv2 saves the ReLU output for its weight
    assert saved.per_module == {"0": 0, "1": 0, "2": feature, "3": 0, "4": feature}


def test_loss_adds_what_it_saves():
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    model = small_net()
    forward = cost.saved_activation_bytes(model, x).total
    square = cost.saved_activation_bytes(model, x, y, loss_fn=lambda out, _: (out * out).sum())
    assert square.total == forward + 2 * 3 * FLOAT  # the logits, saved once for out * out
    cross_entropy = cost.saved_activation_bytes(model, x, y)
    # log-softmax output, int64 targets, a float32 total weight
    assert cross_entropy.total == forward + 2 * 3 * FLOAT + 2 * 8 + FLOAT


def test_per_module_includes_submodules_and_the_counter_matches():
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), nn.Flatten(), nn.Linear(72, 2))
    x = torch.randn(2, 1, 8, 8)
    with cost.SavedTensorCounter(model) as counter:
        out = model(x)
    saved = cost.saved_activation_bytes(model, x)
    assert counter.bytes == saved.total > 0 and out.shape == (2, 2)
    assert saved.per_module["0"] == saved.per_module["0.0"] + saved.per_module["0.1"] > 0


def test_measuring_leaves_batchnorm_statistics_alone():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cost.saved_activation_bytes(model, torch.randn(4, 1, 6, 6) + 3)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])


def parameter_bytes(model):
    return sum(p.nbytes for p in model.parameters())


@pytest.mark.parametrize(
    ("make_optimizer", "states"),
    [(None, 0), (lambda p: torch.optim.SGD(p, lr=0.1), 0),
     (lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), 1),
     (lambda p: torch.optim.Adam(p), 2)],
)
def test_training_memory_closed_forms(make_optimizer, states):
    model = nn.Sequential(*small_net(), nn.BatchNorm1d(3))
    x, y = torch.randn(2, 1, 8, 8), torch.tensor([0, 2])
    optimizer = make_optimizer(model.parameters()) if make_optimizer else None
    report = cost.training_memory(model, x, y, optimizer)
    weights = parameter_bytes(model)
    buffers = sum(b.nbytes for b in model.buffers())
    steps = len(list(model.parameters())) * FLOAT if states == 2 else 0  # Adam's step counts
    assert report.weights == weights + buffers
    assert report.gradients == weights
    assert report.optimizer_state == states * weights + steps
    assert report.activations == cost.saved_activation_bytes(model, x, y).total
    assert report.total == report.weights + report.activations + report.gradients + report.optimizer_state


def test_training_memory_counts_only_trainable_gradients_and_leaves_the_model_alone():
    model = small_net()
    model[0].requires_grad_(False)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0, momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = cost.training_memory(model, torch.randn(2, 1, 8, 8), torch.tensor([0, 2]), optimizer)
    trainable = parameter_bytes(model) - parameter_bytes(model[0])
    assert report.gradients == report.optimizer_state == trainable
    assert not optimizer.state and all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
