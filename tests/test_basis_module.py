"""BlendMask's bottom modules: output shapes and strides, AdelaiDet's parameter names, the
semantic targets and loss."""
import pytest
import torch
from shared_files import reference_shapes

from blendmask import build_basis_module
from blendmask.basis_module import IGNORE_LABEL, semantic_targets
from detectron2.layers import ShapeSpec
from detectron2.structures import BitMasks, Boxes, Instances
from rtinst.config import get_cfg

FPN_SHAPES = {f"p{i}": ShapeSpec(channels=256, stride=2**i) for i in range(3, 8)}
BOTTOM_UP_SHAPES = {"res3": ShapeSpec(channels=512, stride=8),
                    "res5": ShapeSpec(channels=2048, stride=32)}


def basis_cfg(**overrides):
    cfg = get_cfg()
    cfg.MODEL.BASIS_MODULE.NORM = "BN"
    for key, value in overrides.items():
        setattr(cfg.MODEL.BASIS_MODULE, key, value)
    return cfg


def features(shapes, size=64, batch=2):
    return {name: torch.randn(batch, s.channels, size // s.stride, size // s.stride)
            for name, s in shapes.items()}


def test_protonet_predicts_k_bases_at_half_the_finest_stride():
    module = build_basis_module(basis_cfg(NUM_BASES=4), FPN_SHAPES).eval()
    bases, losses = module(features(FPN_SHAPES))
    assert module.out_stride == 4
    assert bases.shape == (2, 4, 16, 16) and losses == {}


@pytest.mark.parametrize("in_features, shapes, stride", [
    (["p3", "p5"], FPN_SHAPES, 8),
    (["res3", "res5"], BOTTOM_UP_SHAPES, 8),
])
def test_deeplabv3plus_decoder_on_p_or_c_features(in_features, shapes, stride):
    cfg = basis_cfg(NAME="DeepLabV3Plus", IN_FEATURES=in_features, NUM_BASES=4, NUM_CONVS=2)
    module = build_basis_module(cfg, shapes).eval()
    bases, _ = module(features(shapes))
    assert module.out_stride == stride
    assert bases.shape == (2, 4, 64 // stride, 64 // stride)
    assert module.low_level[0].out_channels == cfg.MODEL.BASIS_MODULE.DECODER_LOW_LEVEL_CHANNELS


def test_protonet_parameters_match_adelaidet_blendmask_checkpoint():
    reference = {k: v for k, v in reference_shapes("adet_blendmask_R_50_1x").items()
                 if k.startswith("basis_module.")}
    cfg = basis_cfg(NORM="SyncBN", NUM_CLASSES=80)
    ours = {f"basis_module.{k}": tuple(v.shape)
            for k, v in build_basis_module(cfg, FPN_SHAPES).state_dict().items()}
    assert ours == reference


def test_bad_basis_settings_are_clear_errors():
    with pytest.raises(ValueError, match="IN_FEATURES.*res2"):
        build_basis_module(basis_cfg(IN_FEATURES=["res2", "p3"]), FPN_SHAPES)
    with pytest.raises(ValueError, match="NAME 'Proto'"):
        build_basis_module(basis_cfg(NAME="Proto"), FPN_SHAPES)
    with pytest.raises(ValueError, match="two features"):
        build_basis_module(basis_cfg(NAME="DeepLabV3Plus"), FPN_SHAPES)


def _instances(image_size, boxes, classes):
    masks = torch.zeros(len(boxes), *image_size, dtype=torch.bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes):
        mask[y0:y1, x0:x1] = True
    return Instances(image_size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32)),
                     gt_classes=torch.tensor(classes), gt_masks=BitMasks(masks))


def test_semantic_targets_by_hand():
    # 16x16 image padded to 16x24, stride 4: cells sample pixels (2 + 4i, 2 + 4j).
    # A big class-0 box over x, y in [0, 12) and a small class-2 box inside it over [4, 8) x [4, 8).
    instances = _instances((16, 16), [(0, 0, 12, 12), (4, 4, 8, 8)], [0, 2])
    labels = semantic_targets([instances], (16, 24), stride=4, num_classes=3, style="centred")
    expected = torch.tensor([
        [1, 1, 1, 0, -1, -1],
        [1, 3, 1, 0, -1, -1],
        [1, 1, 1, 0, -1, -1],
        [0, 0, 0, 0, -1, -1],
    ])
    expected[expected == -1] = IGNORE_LABEL
    assert torch.equal(labels[0], expected)
    # the reference style (AdelaiDet): painted in annotation order (here the big box last, over
    # the small one), cells sample the top-left pixels (4i, 4j), the padding is background
    reordered = _instances((16, 16), [(4, 4, 8, 8), (0, 0, 12, 12)], [2, 0])
    labels = semantic_targets([reordered], (16, 24), stride=4, num_classes=3, style="reference")
    assert torch.equal(labels[0], torch.tensor([
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [0, 0, 0, 0, 0, 0],
    ]))
    with pytest.raises(ValueError, match="SEMANTIC_TARGETS"):
        semantic_targets([reordered], (16, 24), stride=4, num_classes=3, style="sorted")


def test_semantic_loss_in_training_only_and_weighted():
    cfg = basis_cfg(NUM_CLASSES=3, LOSS_WEIGHT=0.5)
    module = build_basis_module(cfg, FPN_SHAPES).train()
    gt = [_instances((64, 64), [(8, 8, 40, 40)], [1]), _instances((48, 64), [], [])]
    _, losses = module(features(FPN_SHAPES), gt)
    assert set(losses) == {"loss_basis_semantic"}
    # the freshly initialised head predicts ~uniform classes: CE ~ log(4), times 0.5
    uniform = 0.5 * torch.log(torch.tensor(4.0)).item()
    assert losses["loss_basis_semantic"].item() == pytest.approx(uniform, rel=0.05)
    losses["loss_basis_semantic"].backward()
    assert module.seg_head[0].weight.grad.abs().sum() > 0
    assert build_basis_module(basis_cfg(LOSS_ON=False), FPN_SHAPES).train()(
        features(FPN_SHAPES), gt)[1] == {}
