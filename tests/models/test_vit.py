"""ViT: patches, pre-norm blocks with Linear attention and MLP, mean or cls pooling."""

import pytest
import torch
from torch import nn

from edgewise import models
from edgewise.errors import ParameterError
from edgewise.models.vit import Attention, PatchEmbed


def test_layout_and_token_count():
    model = models.build("vit", 10, (1, 28, 28))
    assert isinstance(model.patch_embed, PatchEmbed)
    assert model.patch_embed(torch.randn(2, 1, 28, 28)).shape == (2, 49, 128)
    assert sum(isinstance(m, nn.GELU) for m in model.modules()) == 6
    assert [n for n, _ in model.classifier.named_children()] == ["norm", "pool", "fc"]
    assert isinstance(model.block1.attn.qkv, nn.Linear) and isinstance(model.block1.mlp.fc1, nn.Linear)


def test_cls_pooling_adds_a_token_and_reads_it():
    model = models.build("vit", 10, (3, 32, 32), pool="cls", depth=2).eval()
    tokens = model[:-1](torch.randn(2, 3, 32, 32))
    assert tokens.shape == (2, 65, 128)
    head = model.classifier
    torch.testing.assert_close(head(tokens), head.fc(head.norm(tokens)[:, 0]))


def test_attention_matches_torch_reference():
    torch.manual_seed(0)
    attention = Attention(16, heads=4)
    x = torch.randn(2, 5, 16)
    q, k, v = attention.qkv(x).chunk(3, dim=-1)

    def split(t):
        return t.reshape(2, 5, 4, 4).transpose(1, 2)

    reference = nn.functional.scaled_dot_product_attention(split(q), split(k), split(v))
    expected = attention.proj(reference.transpose(1, 2).reshape(2, 5, 16))
    torch.testing.assert_close(attention(x), expected)


def test_width_scales_dim_in_multiples_of_heads():
    model = models.build("vit", 10, (1, 28, 28), width=0.3)
    assert model.classifier.fc.in_features == 40


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"patch_size": 5}, "The 'patch_size' parameter of vit must be a divisor of the input size 28x28"),
     ({"pool": "max"}, "The 'pool' parameter of vit must be one of cls, mean. Got 'max'."),
     ({"depth": 0}, "The 'depth' parameter of vit must be an int >= 1. Got 0.")],
)
def test_bad_parameters(kwargs, message):
    with pytest.raises(ParameterError, match=message.replace(".", r"\.")):
        models.build("vit", 10, (1, 28, 28), **kwargs)
