"""The blender (BlendMask Sec. 3.2, Eq. 1-4) on hand-computed tensors, and Table 1's two special
cases: M = 1 is YOLACT's weighted sum, one-hot attentions with nearest interpolation are FCIS's
assembly."""
import math

import pytest
import torch

from blendmask.blender import Blender, blend
from detectron2.structures import Boxes, Instances, PolygonMasks


def make_blender(num_bases=2, attn_size=2, resolution=4, top_interp="nearest",
                 pooler_type="ROIAlignV2", basis_stride=4, **kwargs):
    return Blender(num_bases=num_bases, attn_size=attn_size, bottom_resolution=resolution,
                   top_interp=top_interp, pooler_type=pooler_type, sampling_ratio=1,
                   basis_stride=basis_stride, **kwargs)


def test_eq3_eq4_softmax_over_bases_then_weighted_sum():
    rois = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])
    # softmax([0, log 3]) = [1/4, 3/4] at every pixel
    attentions = torch.tensor([0.0, math.log(3.0)]).view(1, 2, 1, 1).expand(1, 2, 2, 2)
    expected = torch.tensor([[[7.75, 15.5], [23.25, 31.0]]])  # 1/4 r0 + 3/4 r1
    torch.testing.assert_close(blend(rois, attentions.contiguous(), "nearest"), expected)


def test_eq2_nearest_interpolation_repeats_each_attention_cell():
    rois = torch.stack([torch.zeros(4, 4), torch.ones(4, 4)])[None]  # r0 = 0, r1 = 1
    # cell (0,0) favours basis 1 (weight 3/4), the other cells weigh both equally
    attentions = torch.zeros(1, 2, 2, 2)
    attentions[0, 1, 0, 0] = math.log(3.0)
    mask = blend(rois, attentions, "nearest")[0]
    expected = torch.full((4, 4), 0.5)
    expected[:2, :2] = 0.75
    torch.testing.assert_close(mask, expected)


def test_eq2_bilinear_interpolation_between_cell_centres():
    # one basis of ones: with K = 2 and r1 = 0 the mask is s^0 = sigmoid(a0 - a1); use a1 = 0 and
    # read a'0 back as logit(mask). 2 -> 4 bilinear (half-pixel centres):
    # a, 3a/4 + b/4, a/4 + 3b/4, b
    rois = torch.stack([torch.ones(4, 4), torch.zeros(4, 4)])[None]
    a0 = torch.tensor([[0.0, 4.0], [0.0, 4.0]])  # varies along x only
    attentions = torch.stack([a0, torch.zeros(2, 2)])[None]
    mask = blend(rois, attentions, "bilinear")[0]
    interpolated = torch.log(mask / (1 - mask))
    expected_row = torch.tensor([0.0, 1.0, 3.0, 4.0])
    torch.testing.assert_close(interpolated, expected_row.expand(4, 4), atol=1e-5, rtol=0)


def test_one_basis_uses_sigmoid_on_both_sides():
    rois = torch.tensor([[[[0.0, 2.0]]]])
    attentions = torch.tensor([[[[math.log(3.0), 0.0]]]])
    expected = torch.tensor([[[0.75 * 0.5, 0.5 * torch.sigmoid(torch.tensor(2.0)).item()]]])
    torch.testing.assert_close(blend(rois, attentions, "nearest"), expected)


def test_m1_is_yolact_weighted_sum():
    torch.manual_seed(0)
    rois = torch.randn(3, 4, 8, 8)
    coefficients = torch.randn(3, 4, 1, 1)
    yolact = torch.einsum("dk,dkhw->dhw", coefficients.flatten(1).softmax(dim=1), rois)
    for mode in ("nearest", "bilinear"):
        torch.testing.assert_close(blend(rois, coefficients, mode), yolact)


def test_one_hot_nearest_attention_is_fcis_assembly():
    # K = M*M = 4 position-sensitive bases; cell (i, j) of the 2x2 grid takes basis 2i + j
    torch.manual_seed(0)
    rois = torch.randn(1, 4, 6, 6)
    attentions = torch.zeros(1, 4, 2, 2)
    for i in range(2):
        for j in range(2):
            attentions[0, 2 * i + j, i, j] = 1e4
    mask = blend(rois, attentions, "nearest")[0]
    for i in range(2):
        for j in range(2):
            tile = (slice(3 * i, 3 * i + 3), slice(3 * j, 3 * j + 3))
            torch.testing.assert_close(mask[tile], rois[0, 2 * i + j][tile])


def test_eq1_aligned_roialign_of_a_ramp():
    # bases at stride 4 whose value is the basis-pixel x; the image box (0, 0, 32, 16) covers basis
    # x in [0, 8). Aligned RoIAlign (half-pixel shift, 1 sample per bin) on 4 bins of width 2
    # samples x = -0.5 + (j + 0.5) * 2 = 0.5, 2.5, 4.5, 6.5, where the ramp equals x.
    blender = make_blender(num_bases=1, resolution=4, basis_stride=4)
    bases = torch.arange(16.0).expand(1, 1, 8, 16).contiguous()
    pooled = blender.pool(bases, [Boxes(torch.tensor([[0.0, 0.0, 32.0, 16.0]]))])
    assert pooled.shape == (1, 1, 4, 4)
    torch.testing.assert_close(pooled[0, 0], torch.tensor([0.5, 2.5, 4.5, 6.5]).expand(4, 4))


def test_eq1_roipool_option_max_pools_quantised_bins():
    # Table 6's "nearest" bottom sampling is Fast R-CNN's RoIPool: the box is quantised to basis
    # pixels 0..7 and each of the 4 bins of width 2 keeps its maximum: 1, 3, 5, 7
    blender = make_blender(num_bases=1, resolution=4, basis_stride=4, pooler_type="ROIPool")
    bases = torch.arange(16.0).expand(1, 1, 8, 16).contiguous()
    pooled = blender.pool(bases, [Boxes(torch.tensor([[0.0, 0.0, 28.0, 16.0]]))])
    torch.testing.assert_close(pooled[0, 0], torch.tensor([1.0, 3.0, 5.0, 7.0]).expand(4, 4))


def _positives(gt_inds, attentions, ctrness=None):
    ctrness = torch.ones(len(gt_inds)) if ctrness is None else torch.tensor(ctrness)
    return Instances((64, 64), gt_inds=torch.tensor(gt_inds), top_feats=attentions,
                     ctrness_targets=ctrness)


def _gt(boxes):
    polygons = [[[x0, y0, x1, y0, x1, y1, x0, y1]] for x0, y0, x1, y1 in boxes]
    return Instances((64, 64), gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                     gt_masks=PolygonMasks(polygons), gt_classes=torch.zeros(len(boxes)).long())


def test_mask_loss_is_log2_for_zero_logits_and_reaches_both_inputs():
    blender = make_blender(num_bases=2, attn_size=2, resolution=4)
    bases = torch.zeros(1, 2, 16, 16, requires_grad=True)  # every mask logit 0
    attentions = torch.randn(3, 2 * 2 * 2, requires_grad=True)
    gt = [_gt([[4.0, 4.0, 40.0, 40.0], [10.0, 20.0, 30.0, 60.0]])]
    loss = blender.loss(bases, _positives([0, 1, 1], attentions), gt)["loss_mask"]
    torch.testing.assert_close(loss, torch.tensor(math.log(2.0)))
    loss.backward()
    assert bases.grad.abs().sum() > 0
    # zero bases: the attentions' gradient is zero too; make them matter
    bases2 = torch.randn(1, 2, 16, 16, requires_grad=True)
    attentions.grad = None
    blender.loss(bases2, _positives([0, 1, 1], attentions), gt)["loss_mask"].backward()
    assert attentions.grad.abs().sum() > 0 and bases2.grad.abs().sum() > 0


def test_mask_loss_targets_are_the_gt_masks_cropped_to_their_boxes():
    # a gt polygon covering the left half of its box: a blender whose masks are +20 on the left
    # half and -20 on the right half has a near-zero loss, the reverse a large one
    blender = make_blender(num_bases=2, attn_size=1, resolution=4, basis_stride=4)
    gt = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 32.0, 32.0]])),
                   gt_masks=PolygonMasks([[[0, 0, 16, 0, 16, 32, 0, 32]]]),
                   gt_classes=torch.zeros(1).long())
    left = torch.zeros(1, 2, 16, 16)
    left[:, :, :, :4] = 20.0
    left[:, :, :, 4:] = -20.0
    attentions = torch.zeros(1, 2)
    good = blender.loss(left, _positives([0], attentions), [gt])["loss_mask"]
    bad = blender.loss(-left, _positives([0], attentions), [gt])["loss_mask"]
    assert good < 1e-3 < 10 < bad


def test_mask_loss_weighs_each_location_by_its_centerness_target():
    # one gt box whose polygon is its left half; bases: +/-20 on the left / right half (basis 0)
    # and the opposite (basis 1). Location A attends to basis 0 (right mask, loss ~0), location
    # B to basis 1 (every pixel wrong by a logit of 20: loss 20 + log(1 + e^-20) ~ 20).
    gt = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[0.0, 0.0, 32.0, 32.0]])),
                   gt_masks=PolygonMasks([[[0, 0, 16, 0, 16, 32, 0, 32]]]),
                   gt_classes=torch.zeros(1).long())
    basis = torch.full((16, 16), -20.0)
    basis[:, :4] = 20.0
    bases = torch.stack([basis, -basis])[None]
    attentions = torch.tensor([[30.0, -30.0], [-30.0, 30.0]])  # M = 1: A -> basis 0, B -> 1
    positives = _positives([0, 0], attentions, ctrness=[1.0, 0.25])
    weighted = make_blender(num_bases=2, attn_size=1, resolution=4).loss(bases, positives, [gt])
    # (1 * 0 + 0.25 * 20) / (1 + 0.25) = 4; the plain mean would be (0 + 20) / 2 = 10
    torch.testing.assert_close(weighted["loss_mask"], torch.tensor(4.0), rtol=1e-5, atol=1e-5)
    plain = make_blender(num_bases=2, attn_size=1, resolution=4,
                         centerness_weighted_loss=False).loss(bases, positives, [gt])
    torch.testing.assert_close(plain["loss_mask"], torch.tensor(10.0), rtol=1e-5, atol=1e-5)


def test_no_positives_gives_a_zero_loss_with_a_graph():
    blender = make_blender()
    bases = torch.randn(1, 2, 16, 16, requires_grad=True)
    loss = blender.loss(bases, _positives([], torch.zeros(0, 8, requires_grad=True)),
                        [_gt([[4.0, 4.0, 40.0, 40.0]])])["loss_mask"]
    assert loss.item() == 0 and loss.requires_grad


def test_inference_sets_probability_masks_per_detection():
    blender = make_blender(num_bases=2, attn_size=2, resolution=4)
    detections = [
        Instances((64, 64), pred_boxes=Boxes(torch.tensor([[0.0, 0.0, 32.0, 32.0]] * 3)),
                  top_feat=torch.randn(3, 8)),
        Instances((64, 64), pred_boxes=Boxes(torch.zeros(0, 4)), top_feat=torch.zeros(0, 8)),
    ]
    blender(torch.randn(2, 2, 16, 16), detections)
    assert detections[0].pred_masks.shape == (3, 1, 4, 4)
    assert detections[1].pred_masks.shape == (0, 1, 4, 4)
    assert ((detections[0].pred_masks > 0) & (detections[0].pred_masks < 1)).all()


def test_unknown_top_interpolation_is_a_clear_error():
    with pytest.raises(ValueError, match="TOP_INTERP"):
        make_blender(top_interp="bicubic")
