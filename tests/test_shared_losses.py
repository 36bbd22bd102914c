"""rtinst.modeling.losses: Dice by hand on 2 x 2 masks, the pairwise form against the per-pair
one, focal being fvcore's, the instance normaliser."""
import math

import fvcore.nn
import pytest
import torch

from rtinst.modeling import losses
from rtinst.modeling.losses import (
    dice_loss,
    num_instances_over_workers,
    pairwise_dice_loss,
    sigmoid_focal_loss,
)

# p = [[1, 0.5], [0, 0]], t = [[1, 1], [0, 0]]: sum(p t) = 1.5, sum p = 1.5, sum p^2 = 1.25,
# sum t = sum t^2 = 2
P = torch.tensor([[[1.0, 0.5], [0.0, 0.0]]])
T = torch.tensor([[[1.0, 1.0], [0.0, 0.0]]])


def test_dice_on_a_2x2_mask_by_hand():
    # smooth 1: 1 - (3 + 1) / (3.5 + 1) = 1/9; no smoothing: 1 - 3 / 3.5 = 1/7
    assert dice_loss(P, T, from_logits=False).tolist() == pytest.approx([1 / 9], abs=1e-7)
    assert dice_loss(P, T, from_logits=False, smooth=0.0).tolist() == pytest.approx([1 / 7],
                                                                                  abs=1e-7)
    # V-Net's squares: 1 - 3 / (1.25 + 2) = 1/13; eps only in the denominator: 1 - 3 / 3.5
    squared = dice_loss(P, T, from_logits=False, squared=True, smooth=0.0)
    assert squared.tolist() == pytest.approx([1 / 13], abs=1e-7)
    assert dice_loss(P, T, from_logits=False, squared=True, smooth=0.0,
                     eps=0.25).tolist() == pytest.approx([1 / 7], abs=1e-7)


def test_dice_per_instance_from_logits_and_of_empty_masks():
    logits = torch.stack([torch.zeros(2, 2), torch.full((2, 2), -40.0)])
    targets = torch.stack([T[0], torch.zeros(2, 2)])
    # instance 0: p = 1/2 everywhere: 1 - (2 + 1) / (2 + 2 + 1) = 0.4; instance 1 is empty on
    # both sides: smoothing makes it 0, and with no smoothing eps keeps it finite (1 - 0 / eps)
    assert dice_loss(logits, targets).tolist() == pytest.approx([0.4, 0.0], abs=1e-7)
    assert dice_loss(logits, targets, smooth=0.0, eps=1e-6).tolist() == pytest.approx(
        [0.5, 1.0], abs=1e-6)


def test_pairwise_dice_is_the_dice_of_every_pair():
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(3, 5, 6, generator=generator)
    targets = (torch.rand(4, 5, 6, generator=generator) > 0.5).float()
    for options in ({}, {"squared": True, "smooth": 0.0, "eps": 1e-6}):
        pairwise = pairwise_dice_loss(inputs, targets, **options)
        assert pairwise.shape == (3, 4)
        for i, j in [(0, 0), (1, 3), (2, 1)]:
            single = dice_loss(inputs[i:i + 1], targets[j:j + 1], **options)
            assert pairwise[i, j].item() == pytest.approx(single.item(), abs=1e-6)


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match=r"inputs \(1, 2, 2\) and targets \(1, 2, 3\)"):
        dice_loss(P, torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="same mask shape"):
        pairwise_dice_loss(torch.zeros(2, 4, 4), torch.zeros(3, 4, 5))


def test_sigmoid_focal_loss_is_fvcores():
    assert sigmoid_focal_loss is fvcore.nn.sigmoid_focal_loss
    # logit 0, target 1: alpha (1 - 1/2)^2 ln 2 (eq. 5 with the alpha balance)
    loss = sigmoid_focal_loss(torch.zeros(1), torch.ones(1), alpha=0.25, gamma=2.0)
    assert loss.item() == pytest.approx(0.25 * 0.25 * math.log(2.0), abs=1e-7)


def test_num_instances_over_workers(monkeypatch):
    assert num_instances_over_workers(0).item() == 1.0
    count = num_instances_over_workers(torch.tensor(7))
    assert count.dtype == torch.float32 and count.item() == 7.0
    # two workers, the other with 0 instances: (3 + 0) / 2
    monkeypatch.setattr(losses, "mean_over_workers", lambda value: (value + 0) / 2)
    assert num_instances_over_workers(3).item() == 1.5
    assert num_instances_over_workers(1).item() == 1.0
