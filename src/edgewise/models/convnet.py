"""A small VGG-style network (Simonyan and Zisserman, 2015, arXiv:1409.1556) with BatchNorm.

`depth` blocks of two conv3x3-BN-ReLU layers; widths 32, 64, 128, ... (doubling);
a 2x2 max-pool ends every block but the last.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from edgewise.errors import check_param
from edgewise.models.layers import classifier, init_weights, scaled

BASE_WIDTH = 32


def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    """conv1-bn1-relu1-conv2-bn2-relu2 (3x3, 'same'), then ``pool`` (2x2 max) when asked."""
    layers = OrderedDict()
    for i, c in enumerate((cin, cout), start=1):
        layers[f"conv{i}"] = nn.Conv2d(c, cout, 3, padding=1, bias=False)
        layers[f"bn{i}"] = nn.BatchNorm2d(cout)
        layers[f"relu{i}"] = nn.ReLU()
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def build(
    num_classes: int, input_shape: tuple[int, int, int], width: float = 1.0, *, depth: int = 3
) -> nn.Sequential:
    """VGG-style blocks of two conv3x3-BN-ReLU (widths 32, 64, 128, ...), max-pool between blocks."""
    side = min(input_shape[1:])
    most = side.bit_length()  # the deepest stack whose pools leave at least 1x1
    check_param("convnet", "depth", depth, isinstance(depth, int) and 1 <= depth <= most,
                f"an int in [1, {most}] for a {input_shape[1]}x{input_shape[2]} input")
    layers = OrderedDict()
    cin = input_shape[0]
    for i in range(depth):
        cout = scaled(BASE_WIDTH * 2**i, width)
        layers[f"block{i + 1}"] = block(cin, cout, pool=i < depth - 1)
        cin = cout
    layers["classifier"] = classifier(cin, num_classes)
    return init_weights(nn.Sequential(layers))
