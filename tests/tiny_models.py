"""Small configs of every method (a MobileNetV2-FPN FCOS and the methods built on it, a small
BlitzMask) and synthetic batches, shared by the tests."""
from pathlib import Path

import numpy as np
import torch

from detectron2.engine import DefaultPredictor
from detectron2.structures import BitMasks, Boxes, Instances
from rtinst.config import get_cfg

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BLITZMASK_CONFIG = CONFIGS / "BlitzMask/MNV2_shapes.yaml"
# three classes (the synthetic batches'; no dataset then: the shapes datasets' six would set the
# class count), 32-channel FPN and head
TINY_BLITZMASK_OPTS = ("MODEL.BLITZMASK.NUM_CLASSES", "3", "DATASETS.TRAIN", "()",
                       "DATASETS.TEST", "()", "MODEL.SEPARABLE_FPN.OUT_CHANNELS", "32",
                       "MODEL.BLITZMASK.HEAD_CHANNELS", "32")

# 128 px images whose boxes, with SIZES_OF_INTEREST [8, 16, 32, 48], have positives on every level:
# P7 (cell (64, 64), max distance 64), P6 and P7 (cells (32, 32): 48, (64, 64): 56), P5 ((16, 112),
# 28), P4 ((104, 8), 16) and three on P3 ((108, 108), (108, 68), (68, 108): 8 each).
EVERY_LEVEL_BOXES = (
    [((0, 0, 128, 128), 0)],
    [((8, 8, 80, 80), 1), ((4, 92, 44, 124), 2), ((90, 4, 110, 24), 0),
     ((100, 100, 110, 110), 1), ((100, 60, 110, 70), 2), ((60, 100, 70, 110), 0)],
)

# two 64 px images with one object each
SMALL_BOXES = ([((8, 10, 40, 30), 0)], [((20, 24, 60, 60), 2)])


def tiny_fcos_cfg():
    """Base-FCOS with a pretrained MobileNetV2, 64-channel FPN and one conv per tower, with size
    limits scaled to 128 px images."""
    cfg = get_cfg()
    cfg.merge_from_file(str(CONFIGS / "Base-FCOS.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_fcos_mobilenet_v2_fpn_backbone"
    cfg.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
    cfg.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]
    cfg.MODEL.FPN.OUT_CHANNELS = 64  # GN(32): 2 channels per group, also on 1x1 maps
    cfg.MODEL.FCOS.NUM_CLASSES = 3
    cfg.MODEL.FCOS.NUM_CLS_CONVS = 1
    cfg.MODEL.FCOS.NUM_BOX_CONVS = 1
    cfg.MODEL.FCOS.SIZES_OF_INTEREST = [8, 16, 32, 48]
    return cfg


def tiny_blendmask_cfg():
    """``tiny_fcos_cfg`` as BlendMask: 32-channel bases of a BN ProtoNet, 4x4 attentions, 16x16
    RoIs."""
    cfg = tiny_fcos_cfg()
    cfg.MODEL.META_ARCHITECTURE = "BlendMask"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.BASIS_MODULE.NUM_CLASSES = 3
    cfg.MODEL.BASIS_MODULE.NORM = "BN"
    cfg.MODEL.BASIS_MODULE.CONVS_DIM = 32
    cfg.MODEL.BLENDMASK.ATTN_SIZE = 4
    cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION = 16
    return cfg


def tiny_centermask_cfg():
    """``tiny_fcos_cfg`` as CenterMask: SAG-Mask and MaskIoU heads of two 32-channel convs."""
    cfg = tiny_fcos_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "CenterMask", "MODEL.MASK_ON", True, "MODEL.MASKIOU_ON", True,
        "MODEL.ROI_HEADS.NAME", "CenterROIHeads", "MODEL.ROI_HEADS.IN_FEATURES", ["p3", "p4", "p5"],
        "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "MODEL.ROI_MASK_HEAD.NAME", "SpatialAttentionMaskHead",
        "MODEL.ROI_MASK_HEAD.NUM_CONV", 2, "MODEL.ROI_MASK_HEAD.CONV_DIM", 32,
        "MODEL.ROI_MASKIOU_HEAD.NUM_CONV", 2, "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", 32,
    ])
    return cfg


def tiny_blitzmask_cfg(*opts):
    """BlitzMask's shapes config with ``TINY_BLITZMASK_OPTS`` (then ``opts``) on the CPU."""
    from rtinst.engine import load_config

    return load_config(str(BLITZMASK_CONFIG), ["MODEL.DEVICE", "cpu", *TINY_BLITZMASK_OPTS, *opts])


def synthetic_batch(boxes_per_image=EVERY_LEVEL_BOXES, size=128):
    """Mapper-style dicts: per image, bright rectangles (in their class's colour channel) on a dark
    background, with the matching ``instances``; an empty list gives an image without objects."""
    batch = []
    for objects in boxes_per_image:
        image = torch.full((3, size, size), 20.0)
        for (x0, y0, x1, y1), label in objects:
            image[label, y0:y1, x0:x1] = 230.0
        boxes = torch.tensor([box for box, _ in objects], dtype=torch.float32).reshape(-1, 4)
        classes = torch.tensor([label for _, label in objects], dtype=torch.long)
        instances = Instances((size, size), gt_boxes=Boxes(boxes), gt_classes=classes)
        batch.append({"image": image, "instances": instances, "height": size, "width": size})
    return batch


def batch_with_masks(boxes_per_image=EVERY_LEVEL_BOXES, size=128):
    """``synthetic_batch`` with ``gt_masks``: each rectangle's mask is the rectangle itself."""
    batch = synthetic_batch(boxes_per_image, size)
    for item in batch:
        instances = item["instances"]
        masks = torch.zeros(len(instances), size, size, dtype=torch.bool)
        for mask, (x0, y0, x1, y1) in zip(masks, instances.gt_boxes.tensor.long().tolist()):
            mask[y0:y1, x0:x1] = True
        instances.gt_masks = BitMasks(masks)
    return batch


def train_on_batch(model, batch, iterations, lr):
    """``model`` trained in place by SGD (momentum 0.9) on ``batch`` for ``iterations`` steps of
    its summed losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for _ in range(iterations):
        losses = model(batch)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return model


def without_gradient(parts):
    """Names of ``parts`` ({name: parameter}) that got no (or an all-zero) gradient."""
    return [name for name, p in parts.items() if p.grad is None or p.grad.abs().sum() == 0]


def predict_untrained(cfg, k=7, height=150, width=210):
    """``DefaultPredictor(cfg)`` on a random ``height`` x ``width`` image, keeping the top ``k``
    FCOS candidates whatever their (untrained) scores: the output ``Instances``."""
    cfg = cfg.clone()
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = k
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return DefaultPredictor(cfg)(image)["instances"]


YOLACT_CONFIG = CONFIGS / "YOLACT/MNV2_FPN_shapes.yaml"
# three classes (the synthetic batches'), 128 px input, 32-channel FPN, head and ProtoNet, 8
# prototypes; anchors scaled to 128 px
TINY_YOLACT_OPTS = ("MODEL.YOLACT.NUM_CLASSES", "3", "DATASETS.TRAIN", "()", "DATASETS.TEST", "()",
                    "MODEL.YOLACT.INPUT_SIZE", "128", "MODEL.FPN.OUT_CHANNELS", "32",
                    "MODEL.YOLACT.HEAD_CONV_DIM", "32", "MODEL.YOLACT.PROTONET_CONV_DIM", "32",
                    "MODEL.YOLACT.NUM_PROTOTYPES", "8",
                    "MODEL.YOLACT.ANCHOR_SCALES", "[[8], [16], [32], [64], [128]]")


def tiny_yolact_cfg(*opts):
    """YOLACT's shapes config made small (``TINY_YOLACT_OPTS``), plus ``opts``."""
    from rtinst.engine import load_config

    return load_config(str(YOLACT_CONFIG), ["MODEL.DEVICE", "cpu", *TINY_YOLACT_OPTS, *opts])
