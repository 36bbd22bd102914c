"""BlendMask's config keys (``add_blendmask_config``), named as AdelaiDet's so its configs port.

Every hyper-parameter of the paper's Sec. 3.3 is a key: R (``BOTTOM_RESOLUTION``), M
(``ATTN_SIZE``), K (``NUM_BASES``), the bottom module's input features (``IN_FEATURES``), the
bottom pooler (``POOLER_TYPE``) and the top interpolation (``TOP_INTERP``).
"""
from detectron2.config import CfgNode as CN


def add_blendmask_config(cfg):
    cfg.MODEL.BLENDMASK = CN()
    _C = cfg.MODEL.BLENDMASK
    _C.ATTN_SIZE = 14  # M: attention resolution (top layer predicts K*M*M channels)
    _C.TOP_INTERP = "bilinear"  # Eq. 2: "bilinear" or "nearest"
    _C.BOTTOM_RESOLUTION = 56  # R: RoI resolution of the pooled bases (Eq. 1)
    # Eq. 1's pooler: "ROIAlignV2" (aligned bilinear, the paper's final choice) or "ROIPool"
    # (nearest, Table 6); the pooler's scale follows the bottom module's output stride
    _C.POOLER_TYPE = "ROIAlignV2"
    _C.POOLER_SAMPLING_RATIO = 1
    _C.INSTANCE_LOSS_WEIGHT = 1.0
    # weigh each positive location's mask loss by its FCOS centerness target (AdelaiDet's loss);
    # False: a plain mean over the positive locations
    _C.CENTERNESS_WEIGHTED_LOSS = True
    _C.MASK_THRESHOLD = 0.5  # pixel probability above which a pasted mask is foreground

    cfg.MODEL.BASIS_MODULE = CN()
    _B = cfg.MODEL.BASIS_MODULE
    # "ProtoNet": YOLACT-style Proto-FPN on IN_FEATURES (summed at the finest, then upsampled 2x);
    # "DeepLabV3Plus": DeepLabV3+ decoder on two inputs (fine, coarse), e.g. p3,p5 or res3,res5
    _B.NAME = "ProtoNet"
    _B.NUM_BASES = 4  # K
    _B.IN_FEATURES = ["p3", "p4", "p5"]
    _B.CONVS_DIM = 128
    _B.NUM_CONVS = 3
    _B.NORM = "SyncBN"
    _B.DECODER_LOW_LEVEL_CHANNELS = 48  # DeepLabV3+: width the fine input is reduced to
    # auxiliary semantic segmentation on the finest input ("+semantic", Table 7)
    _B.LOSS_ON = True
    _B.NUM_CLASSES = 80
    _B.LOSS_WEIGHT = 0.3
    # its targets: "reference" (AdelaiDet: instances painted in annotation order, the top-left
    # pixel of each cell, the padding background) or "centred" (smallest instance on top, the
    # cells' centres, the padding ignored); see blendmask.basis_module.semantic_targets
    _B.SEMANTIC_TARGETS = "reference"
