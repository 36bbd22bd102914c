"""FCOS head: outputs, initialisation, options (shared tower, per-level BN, deformable conv,
center-ness branch placement) and AdelaiDet's parameter names for the BN-head variant."""
import math

import pytest
import torch
from shared_files import reference_shapes
from torch import nn

from rtinst.modeling.fcos import FCOSHead

SIZES = ((8, 8), (4, 4), (2, 2))


def _head(**options):
    args = dict(in_channels=8, num_levels=3, num_classes=3, num_cls_convs=1, num_box_convs=1,
                norm="")
    args.update(options)
    return FCOSHead(**args)


def _features(channels=8):
    torch.manual_seed(0)
    return [torch.randn(2, channels, h, w) for h, w in SIZES]


def test_outputs_per_level():
    top_module = nn.Conv2d(8, 5, kernel_size=1)
    logits, bbox_reg, ctrness, top_feats, towers = _head()(_features(), top_module)
    for level, (h, w) in enumerate(SIZES):
        assert logits[level].shape == (2, 3, h, w)
        assert bbox_reg[level].shape == (2, 4, h, w) and (bbox_reg[level] >= 0).all()
        assert ctrness[level].shape == (2, 1, h, w)
        assert top_feats[level].shape == (2, 5, h, w)
        assert towers[level].shape == (2, 8, h, w)
    assert _head()(_features())[3] == []
    exp_reg = _head(norm_reg_targets=False)(_features())[1]
    assert all((r > 0).all() for r in exp_reg)


def test_initialisation():
    head = _head(prior_prob=0.01)
    assert torch.allclose(head.cls_logits.bias, torch.full((3,), -math.log(99)))
    assert head.bbox_pred.bias.abs().sum() == 0 and head.ctrness.bias.abs().sum() == 0
    assert abs(head.cls_tower[0].weight.std().item() - 0.01) < 0.003
    assert [s.scale.item() for s in head.scales] == [1.0, 1.0, 1.0]
    assert _head(use_scale=False).scales is None


def _all_parameters_get_gradient(head, features):
    outputs = head(features)
    sum((o ** 2).sum() for level_outputs in outputs[:3] for o in level_outputs).backward()
    return {n for n, p in head.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}


def test_shared_tower_with_per_level_batch_norm():
    head = _head(num_share_convs=2, num_cls_convs=0, num_box_convs=0, norm="BN")
    features = _features()
    assert _all_parameters_get_gradient(head, features) == set()
    norms = head.share_tower[1]
    assert len(norms) == 3  # one BN per level, each with its level's statistics
    for level, feature in enumerate(features):
        expected = 0.1 * head.share_tower[0](feature).mean(dim=(0, 2, 3))
        torch.testing.assert_close(
            norms[level].running_mean, expected.detach(), rtol=1e-4, atol=1e-5
        )


def test_deformable_last_tower_conv():
    head = _head(num_cls_convs=2, num_box_convs=2, use_deformable=True)
    assert type(head.cls_tower[0]) is nn.Conv2d
    assert head.cls_tower[2].offset.weight.abs().sum() == 0  # starts as a plain convolution
    assert _all_parameters_get_gradient(head, _features()) == set()


@pytest.mark.parametrize("on_reg", [True, False])
def test_centerness_branch_placement(on_reg):
    head = _head(centerness_on_reg=on_reg)
    head(_features())[2][0].sum().backward()
    assert (head.bbox_tower[0].weight.grad is not None) == on_reg
    assert (head.cls_tower[0].weight.grad is not None) == (not on_reg)


def test_bn_head_parameter_names_match_adelaidet_blendmask_rt():
    prefix = "proposal_generator.fcos_head."
    reference = {
        key[len(prefix):]: shape
        for key, shape in reference_shapes("adet_blendmask_RT_R_50_4x_bn-head_syncbn_shtw").items()
        if key.startswith(prefix)
    }
    head = FCOSHead(in_channels=256, num_levels=3, num_classes=80, num_cls_convs=0, num_box_convs=0,
                    num_share_convs=3, norm="SyncBN", use_scale=False)
    assert {k: tuple(v.shape) for k, v in head.state_dict().items()} == reference
