"""BlitzMask's config keys (``add_blitzmask_config``).

The paper (Sec. 2) fixes the structure, not the widths: the defaults below are ours, chosen so
that the MobileNetV2 model at 320x320 stays within a mobile budget (0.9 GFLOPs in all).
"""
from detectron2.config import CfgNode as CN


def add_blitzmask_config(cfg):
    cfg.MODEL.BLITZMASK = CN()
    _C = cfg.MODEL.BLITZMASK
    _C.NUM_CLASSES = 80  # C: heatmap channels
    _C.IN_FEATURE = "p2"  # the separable FPN's stride-4 output (Sec. 2.1)
    _C.NUM_BASES = 32  # K: channels of both Coefficients and Spanning Set (Eq. 1)
    _C.HEAD_CHANNELS = 64
    _C.NUM_HEAD_CONVS = 1  # separable 3x3 convolutions per output branch
    _C.NORM = "BN"  # "BN", "SyncBN", "GN" or "" in the head
    _C.PRIOR_PROB = 0.1  # initial heatmap probability (bias of the heatmap predictor)

    # targets (Sec. 2.2): elliptical Gaussian at the mask's centre of mass, with standard
    # deviations ALPHA * box width / 6 and ALPHA * box height / 6
    _C.GAUSSIAN_ALPHA = 0.54
    # where the size loss applies: "gaussian" (every cell of the box, weighted by the object's
    # Gaussian) or "peak" (the peak cell only)
    _C.SIZE_REGION = "gaussian"
    # losses
    _C.FOCAL_ALPHA = 2.0  # exponent of (1 - p) (CenterNet's alpha)
    _C.FOCAL_BETA = 4.0  # penalty reduction (1 - y)^beta around each peak
    _C.POLY1_EPSILON = 1.0  # Poly-1 perturbation of the focal loss' first Taylor coefficient
    _C.HEATMAP_LOSS_WEIGHT = 1.0
    _C.SIZE_L1_LOSS_WEIGHT = 0.1  # L1 on the distances, in stride units
    _C.SIZE_IOU_LOSS_WEIGHT = 1.0  # UnitBox: -log IoU
    _C.MASK_BCE_LOSS_WEIGHT = 1.0  # cross-entropy averaged over each object's MASK_CROP region
    _C.MASK_DICE_LOSS_WEIGHT = 1.0
    # where a mask lives: "box", the cross-entropy is averaged over the cells of the object's
    # box and the predicted masks are zeroed outside the predicted box; "none", the cross-entropy
    # is averaged over the whole map and masks are not cropped (Fig. 1: resize, threshold);
    # "loss", the box in the loss only (train and inference differ): rtinst's BlitzMask until
    # 2026-12-07, which the golden fixture and earlier measurements hold.
    # docs/methods/blitzmask.md has them measured
    _C.MASK_CROP = "box"

    # inference (Sec. 2.1, Fig. 1)
    _C.TEST = CN()
    _C.TEST.TOPK = 100  # peaks kept after the 3x3 max-pool peak extraction
    _C.TEST.SCORE_THRESH = 0.05
    _C.TEST.MASK_THRESHOLD = 0.5  # sigma(M^n) > threshold
