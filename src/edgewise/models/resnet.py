"""ResNet for small images (He et al., 2016, arXiv:1512.03385), CIFAR-style.

A 3x3 stride-1 stem, no max-pool, then stages of `BasicBlock` whose first block
halves the resolution (except in the first stage). ``depth=8``: three stages of
one block, widths 16/32/64; ``depth=18``: four stages of two blocks, widths
64/128/256/512 (17 ReLUs in all).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from edgewise.errors import check_param
from edgewise.models.layers import classifier, conv_bn, init_weights, scaled

# depth -> (stage widths at width 1, blocks per stage)
STAGES = {8: ((16, 32, 64), (1, 1, 1)), 18: ((64, 128, 256, 512), (2, 2, 2, 2))}


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU: (N, cin, H, W) -> (N, cout, H/s, W/s).

    The shortcut is a 1x1 conv + BN where the shape changes, else the identity.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        if stride != 1 or cin != cout:
            self.shortcut = conv_bn(cin, cout, kernel_size=1, stride=stride, activation=None)
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + self.shortcut(x))


def build(
    num_classes: int, input_shape: tuple[int, int, int], width: float = 1.0, *, depth: int = 8
) -> nn.Sequential:
    """CIFAR-style ResNet-8 (widths 16/32/64) or ResNet-18 (64/128/256/512), 3x3 stem, no max-pool."""
    check_param("resnet", "depth", depth, depth in STAGES, "one of 8, 18")
    widths, blocks = STAGES[depth]
    widths = [scaled(w, width) for w in widths]
    layers = OrderedDict(stem=conv_bn(input_shape[0], widths[0]))
    cin = widths[0]
    for i, (cout, n) in enumerate(zip(widths, blocks, strict=True)):
        stage = []
        for j in range(n):
            stage.append(BasicBlock(cin, cout, stride=2 if i > 0 and j == 0 else 1))
            cin = cout
        layers[f"layer{i + 1}"] = nn.Sequential(*stage)
    layers["classifier"] = classifier(cin, num_classes)
    return init_weights(nn.Sequential(layers))
