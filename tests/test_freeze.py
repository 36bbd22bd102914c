"""rtinst.modeling.freeze.freeze: after freezing part of a model, ``model.train()``, a forward on
a batch and a backward leave the frozen BatchNorm statistics as they were and give the frozen
parameters no gradient, while the rest trains."""
import pytest
import torch
from detectron2.layers import FrozenBatchNorm2d
from torch import nn

from rtinst.modeling.freeze import freeze


def model():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    return nn.Sequential(body, head)


def test_frozen_part_keeps_its_statistics_and_gets_no_gradient():
    net = model()
    net[0][1].running_mean.fill_(0.5)
    net[0][1].running_var.fill_(2.0)
    expected_body = net[0].eval()(torch.ones(1, 3, 5, 5) * 3)  # the frozen part's output
    net[0] = freeze(net[0])
    frozen_state = {k: v.clone() for k, v in net[0].state_dict().items()}
    head_mean = net[1][1].running_mean.clone()

    net.train()
    images = torch.randn(4, 3, 5, 5) * 3 + 2
    net(images).square().mean().backward()

    assert isinstance(net[0][1], FrozenBatchNorm2d)
    for key, value in net[0].state_dict().items():
        assert torch.equal(value, frozen_state[key]), key
    assert all(not p.requires_grad and p.grad is None for p in net[0].parameters())
    # the model did train: the head's statistics moved and its parameters have gradients
    assert not torch.equal(net[1][1].running_mean, head_mean)
    assert all(p.grad is not None for p in net[1].parameters())
    # in training mode the frozen part computes what it computed in eval mode before
    assert torch.allclose(net[0](torch.ones(1, 3, 5, 5) * 3), expected_body, atol=1e-6)


def test_a_batchnorm_itself_is_replaced_so_the_returned_module_must_be_used():
    bn = nn.BatchNorm2d(3)
    frozen = freeze(bn)
    assert isinstance(frozen, FrozenBatchNorm2d) and frozen is not bn
    assert not any(p.requires_grad for p in bn.parameters())


def test_other_batchnorms_are_named():
    with pytest.raises(ValueError, match="BatchNorm1d 1 cannot be frozen"):
        freeze(nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))
