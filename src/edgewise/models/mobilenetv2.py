"""MobileNetV2 (Sandler et al., 2018, arXiv:1801.04381) with a small-image stem.

Inverted residuals: a 1x1 expansion with ReLU6, a 3x3 depthwise conv with
ReLU6, a linear 1x1 projection (no activation), and the skip where the shape
allows. Channel counts are rounded to multiples of 8 after the width multiplier.
For inputs below 64 px the stem and the first stride-2 stage run at stride 1,
so 28x28 and 32x32 images end at 4x4 rather than 1x1.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn

from edgewise.models.layers import classifier, conv_bn, init_weights, scaled

# (expansion t, channels c, blocks n, stride of the first block s), as in the paper's Table 2
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
STEM_WIDTH = 32
HEAD_WIDTH = 1280
SMALL_IMAGE = 64  # px; below this, the stem and the 24-channel stage keep the resolution


class InvertedResidual(nn.Module):
    """``expand`` (1x1, ReLU6) -> ``depthwise`` (3x3, ReLU6) -> ``project`` (1x1, linear), + skip.

    (N, cin, H, W) -> (N, cout, H/stride, W/stride); the skip is added when
    stride is 1 and cin == cout. ``expand`` is the identity when the ratio is 1.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = cin * expand_ratio
        self.use_residual = stride == 1 and cin == cout
        self.expand = conv_bn(cin, hidden, 1, activation=nn.ReLU6) if expand_ratio != 1 else nn.Identity()
        self.depthwise = conv_bn(hidden, hidden, 3, stride, groups=hidden, activation=nn.ReLU6)
        self.project = conv_bn(hidden, cout, 1, activation=None)

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


def build(num_classes: int, input_shape: tuple[int, int, int], width: float = 1.0) -> nn.Sequential:
    """MobileNetV2 with width multiplier, stride-1 stem for small images, 35 ReLU6 modules."""
    small = min(input_shape[1:]) < SMALL_IMAGE
    cin = scaled(STEM_WIDTH, width, 8)
    layers = OrderedDict(
        stem=conv_bn(input_shape[0], cin, 3, stride=1 if small else 2, activation=nn.ReLU6)
    )
    index = 1
    for t, c, n, s in SETTINGS:
        cout = scaled(c, width, 8)
        stride = 1 if small and c == 24 else s
        for j in range(n):
            layers[f"block{index}"] = InvertedResidual(cin, cout, stride if j == 0 else 1, t)
            cin = cout
            index += 1
    head = scaled(HEAD_WIDTH, width, 8)
    layers["head"] = conv_bn(cin, head, 1, activation=nn.ReLU6)
    layers["classifier"] = classifier(head, num_classes)
    return init_weights(nn.Sequential(layers))
