"""CenterMask's config keys (``add_centermask_config``), named as centermask2's so its configs
port. VoVNet's keys (``MODEL.VOVNET``) are rtinst's, as other methods use the backbone too."""
from detectron2.config import CfgNode as CN


def add_centermask_config(cfg):
    # RoI level assignment: "ratio" = Eq. 2 (scale-adaptive), "area" = Eq. 1 (FPN)
    cfg.MODEL.ROI_MASK_HEAD.ASSIGN_CRITERION = "ratio"
    # mask scoring (MaskIoU head); recalibrated scores are output as ``mask_scores``
    cfg.MODEL.MASKIOU_ON = False
    cfg.MODEL.MASKIOU_LOSS_WEIGHT = 1.0
    cfg.MODEL.ROI_MASKIOU_HEAD = CN()
    cfg.MODEL.ROI_MASKIOU_HEAD.CONV_DIM = 256
    cfg.MODEL.ROI_MASKIOU_HEAD.NUM_CONV = 4
    # clamp the predicted IoU to [0, 1] before it multiplies the box score into mask_scores;
    # False: the raw prediction, as centermask2
    cfg.MODEL.ROI_MASKIOU_HEAD.CLAMP_IOU = False
    # the IoU targets' full ground-truth area on the RoI grid: "reference" (centermask2: the in-box
    # part over the share of the mask inside the box) or "rescaled" (the mask's area rescaled
    # from image pixels to the grid); see centermask.mask_scoring.mask_iou_targets
    cfg.MODEL.ROI_MASKIOU_HEAD.TARGETS = "reference"
    # stop the mask-scoring loss at the RoI features and mask probabilities it judges; False
    # (centermask2): it trains the mask head and the backbone too. On the shapes data the L2
    # regression with gradient into the FPN diverged (NaN within 13 iterations at LR 0.01)
    cfg.MODEL.ROI_MASKIOU_HEAD.DETACH_INPUTS = False
