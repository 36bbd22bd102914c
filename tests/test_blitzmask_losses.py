"""BlitzMask losses (Sec. 2.2) on hand-computed small inputs."""
import math

import pytest
import torch
import torch.nn.functional as F

from blitzmask.losses import mask_bce_loss, mask_dice_loss, poly1_focal_loss, size_loss


def _logit(p):
    return math.log(p / (1 - p))


def test_poly1_focal_loss_hand_computed():
    # one peak with p = 0.8, one negative with p = 0.3 next to it (y = 0.5), one far (y = 0, p 0.1)
    logits = torch.tensor([_logit(0.8), _logit(0.3), _logit(0.1)])
    target = torch.tensor([1.0, 0.5, 0.0])
    a, b, eps = 2.0, 4.0, 1.0
    positive = 0.2 ** 2 * -math.log(0.8) + eps * 0.2 ** 3
    near = 0.5 ** 4 * (0.3 ** 2 * -math.log(0.7) + eps * 0.3 ** 3)
    far = 0.1 ** 2 * -math.log(0.9) + eps * 0.1 ** 3
    loss = poly1_focal_loss(logits, target, a, b, eps)
    assert loss.item() == pytest.approx(positive + near + far, rel=1e-5)


def test_poly1_term_is_the_only_difference_from_centernet_focal_loss():
    logits = torch.randn(3, 5, 5)
    target = torch.rand(3, 5, 5) * 0.9
    target[1, 2, 2] = 1
    p = torch.sigmoid(logits)
    eps = 0.7
    poly_term = torch.where(target == 1, (1 - p) ** 3, (1 - target) ** 4 * p ** 3).sum()
    delta = poly1_focal_loss(logits, target, epsilon=eps) - poly1_focal_loss(logits, target,
                                                                            epsilon=0.0)
    assert torch.isclose(delta, eps * poly_term, rtol=1e-5)


def test_size_loss_l1_and_unitbox():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 1.0], [2.0, 2.0, 2.0, 2.0]])
    weights = torch.tensor([1.0, 1.0])  # two instances, one cell each
    l1, iou = size_loss(pred, target, weights)
    assert l1.item() == pytest.approx(2.0 / 2)
    # first: 2x2 box inside a 4x2 box: IoU 0.5 -> -log 0.5; second: identical -> 0
    assert iou.item() == pytest.approx(-math.log(0.5) / 2, rel=1e-5)


def test_size_loss_weights_average_cells_within_an_instance():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 1.0]])
    l1, _ = size_loss(pred, target, torch.tensor([0.75, 0.25]))  # one instance, two cells
    assert l1.item() == pytest.approx(0.25)


def _square(size, grid, value_in, value_out):
    logits = torch.full((1, grid, grid), value_out)
    logits[0, :size, :size] = value_in
    target = torch.zeros(1, grid, grid)
    target[0, :size, :size] = 1.0
    return logits, target


def test_mask_losses_weigh_small_and_large_objects_equally():
    """The same relative error on a 2x2 and an 8x8 object gives the same losses: cross-entropy
    is averaged over the object's box, Dice is a ratio."""
    small_logits, small_target = _square(2, 16, 0.5, -30.0)
    large_logits, large_target = _square(8, 16, 0.5, -30.0)
    small_region, large_region = small_target.bool(), large_target.bool()
    bce_small = mask_bce_loss(small_logits, small_target, small_region)
    bce_large = mask_bce_loss(large_logits, large_target, large_region)
    assert bce_small.item() == pytest.approx(-math.log(torch.sigmoid(torch.tensor(0.5)).item()))
    assert bce_small.item() == pytest.approx(bce_large.item())
    assert mask_dice_loss(small_logits, small_target).item() == pytest.approx(
        mask_dice_loss(large_logits, large_target).item(), rel=1e-5)
    # whereas a plain image-wide mean would favour the large object 16x
    plain_small = F.binary_cross_entropy_with_logits(small_logits, small_target)
    plain_large = F.binary_cross_entropy_with_logits(large_logits, large_target)
    assert plain_large / plain_small == pytest.approx(16, rel=1e-3)


def test_dice_loss_hand_computed_and_mean_over_instances():
    p = torch.tensor([[0.5, 0.5], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    logits = torch.logit(p.clamp(1e-7, 1 - 1e-7))
    # sum p t = 0.5, sum p^2 = 0.5, sum t^2 = 1 -> dice 2 * 0.5 / 1.5
    expected = 1 - 1 / 1.5
    perfect = torch.tensor([[30.0, -30.0], [-30.0, -30.0]])
    loss = mask_dice_loss(torch.stack([logits, perfect]), torch.stack([t, t]))
    assert loss.item() == pytest.approx(expected / 2, rel=1e-4)
