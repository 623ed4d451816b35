"""Pieces the convolutional families share: width scaling, conv-BN-activation, the classifier."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of `divisor` (at least `divisor`).

    As in MobileNetV2, rounding never drops more than 10% below the exact value.
    """
    exact = channels * width
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * exact else rounded


def conv_bn(
    cin: int,
    cout: int,
    kernel_size: int = 3,
    stride: int = 1,
    groups: int = 1,
    activation: type[nn.Module] | None = nn.ReLU,
) -> nn.Sequential:
    """``conv`` (bias-free, 'same' padding) -> ``bn`` -> ``relu`` (left out when `activation` is None)."""
    layers = OrderedDict(
        conv=nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        bn=nn.BatchNorm2d(cout),
    )
    if activation is not None:
        layers["relu"] = activation()
    return nn.Sequential(layers)


def classifier(features: int, num_classes: int) -> nn.Sequential:
    """Global average pool (N, C, H, W) -> (N, C, 1, 1), flatten, linear to (N, num_classes)."""
    return nn.Sequential(
        OrderedDict(
            pool=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            fc=nn.Linear(features, num_classes),
        )
    )


def init_weights(model: nn.Module) -> nn.Module:
    """He (fan-out) init for convolutions, BN as identity, small normal for linear layers."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
    return model
