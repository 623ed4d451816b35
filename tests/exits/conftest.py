"""Shared fixtures of the early-exit tests: a residual model defined only here, small data,
and a quickly trained early-exit network."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgewise import data
from edgewise.exits.network import EarlyExitNetwork


class Block(nn.Module):
    """conv-BN-ReLU-conv-BN plus the identity skip, then ReLU."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.act2 = nn.ReLU()

    def forward(self, x):
        return self.act2(self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x))))) + x)


class ResidualNet(nn.Module):
    """A user's model the library has never seen: stem, three residual blocks, a downsampling
    step with a functional skip across it, pool, linear."""

    def __init__(self, num_classes: int = 10, channels: int = 8) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(channels), nn.ReLU())
        self.block1 = Block(channels)
        self.block2 = Block(channels)
        self.down = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.block3 = Block(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.block2(self.block1(self.stem(x)))
        x = self.down(x) + nn.functional.avg_pool2d(x, 2)
        x = self.block3(x)
        return self.fc(torch.flatten(self.pool(x), 1))


@pytest.fixture
def one_thread():
    """Time on one thread: on a busy 2-core machine, two threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def residual_model() -> ResidualNet:
    torch.manual_seed(0)
    return ResidualNet().eval()


@pytest.fixture(scope="session")
def splits() -> data.Splits:
    return data.load("synthetic", n=1500, shape=(1, 16, 16), num_classes=10, noise=1.0)


@pytest.fixture(scope="session")
def trained(splits) -> EarlyExitNetwork:
    """The residual model with exits after block1 and block2, trained jointly for a few epochs.

    Session-wide and read-only: tests that change it take a copy.
    """
    torch.manual_seed(0)
    net = EarlyExitNetwork.from_model(ResidualNet(), ["block1", "block2"], input_shape=(1, 16, 16))
    images, labels = splits.train.tensors
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions; one thread is fastest on a busy machine
    try:
        net.train()
        for _ in range(4):
            for batch in torch.randperm(len(images)).split(64):
                outputs = net(images[batch])
                loss = sum(nn.functional.cross_entropy(z, labels[batch]) for z in outputs)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval()
