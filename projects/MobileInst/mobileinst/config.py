"""MobileInst's config keys (``add_mobileinst_config``): the model (``MODEL.MOBILEINST``), its
backbones (``MODEL.TOPFORMER``, ``MODEL.MNV2_GLOBAL``) and the video keys.

Defaults are the paper's where it gives them (Sec. 3.2-3.6, Sec. 4.2, Tables 3-6); the widths it
leaves open are SparseInst's (Cheng et al., CVPR 2022), whose loss and matching MobileInst
follows (Sec. 3.6).
"""
from detectron2.config import CfgNode as CN

__all__ = ["add_mobileinst_config", "DECODER_KINDS", "MASK_DECODERS", "POOL_TYPES"]

# MODEL.MOBILEINST.INSTANCE_DECODER.KIND (Table 3): the first and second decoder's features
DECODER_KINDS = {
    "global_local": ("global", "local"),
    "local_local": ("local", "local"),
    "global": ("global",),
    "local": ("local",),
}
POOL_TYPES = ("max", "avg", "none")  # MODEL.MOBILEINST.INSTANCE_DECODER.POOL_TYPE (Table 5)
MASK_DECODERS = ("semantic_enhanced", "sparseinst")  # MODEL.MOBILEINST.MASK_DECODER.KIND (Table 6)


def add_mobileinst_config(cfg):
    cfg.MODEL.MOBILEINST = CN()
    _C = cfg.MODEL.MOBILEINST
    _C.NUM_CLASSES = 80
    # backbone outputs: the local features X3-X5 (strides 8, 16, 32) and the global X6 (64)
    _C.IN_FEATURES = ["x3", "x4", "x5"]
    _C.GLOBAL_FEATURE = "x6"

    # Dual transformer instance decoder (Sec. 3.2)
    _C.INSTANCE_DECODER = CN()
    _C.INSTANCE_DECODER.NUM_QUERIES = 100
    _C.INSTANCE_DECODER.HIDDEN_DIM = 256
    _C.INSTANCE_DECODER.NUM_HEADS = 8
    _C.INSTANCE_DECODER.DIM_FEEDFORWARD = 1024
    _C.INSTANCE_DECODER.DROPOUT = 0.0
    _C.INSTANCE_DECODER.KIND = "global_local"  # a key of DECODER_KINDS (Table 3)
    # the local features X_L = pool(X_mask): max-pooled by 8 x 8 (stride 64, Table 5)
    _C.INSTANCE_DECODER.POOL_TYPE = "max"
    _C.INSTANCE_DECODER.POOL_SIZE = 8
    _C.INSTANCE_DECODER.KERNEL_DIM = 128  # channels of each mask kernel (= of X_mask)

    # Semantic-enhanced mask decoder (Sec. 3.3) or SparseInst's 4-conv decoder (Table 6)
    _C.MASK_DECODER = CN()
    _C.MASK_DECODER.KIND = "semantic_enhanced"
    _C.MASK_DECODER.CHANNELS = 128  # the fused pyramid's channels
    _C.MASK_DECODER.NUM_CONVS = 4  # the sparseinst kind's 3x3 convolutions
    _C.MASK_DECODER.NORM = "BN"

    # Training (Sec. 3.6): bipartite matching on dice^alpha x class probability^beta
    # (SparseInst's alpha 0.8, beta 0.2), focal classification, dice + BCE masks, BCE IoU-aware
    # objectness; L = 2 L_cls + 2 L_mask + 1 L_obj
    _C.MATCHER_ALPHA = 0.8
    _C.MATCHER_BETA = 0.2
    _C.FOCAL_ALPHA = 0.25
    _C.FOCAL_GAMMA = 2.0
    _C.CLASS_LOSS_WEIGHT = 2.0
    _C.MASK_DICE_LOSS_WEIGHT = 2.0
    _C.MASK_BCE_LOSS_WEIGHT = 2.0
    _C.OBJECTNESS_LOSS_WEIGHT = 1.0
    _C.PRIOR_PROB = 0.01  # initial class probability (bias of the classifier)

    # Inference: NMS-free; score = sqrt(class probability x objectness)
    _C.TEST = CN()
    _C.TEST.TOPK = 100
    _C.TEST.SCORE_THRESH = 0.05
    _C.TEST.MASK_THRESHOLD = 0.45

    # Video (Sec. 3.4-3.5): the keyframe's kernels segment the next KERNEL_REUSE_FRAMES - 1
    # frames (T, Table 4; 1: every frame is a keyframe, and the ONNX export is one image graph;
    # the video configs set 3); temporal training passes frame t's global-decoder queries to
    # frame t + delta (INPUT.VIDEO.SAMPLING_FRAME_RANGE bounds delta)
    _C.VIDEO = CN()
    _C.VIDEO.KERNEL_REUSE_FRAMES = 1
    _C.VIDEO.QUERY_PASSING = False
    # kernel association (MODEL.TRACKER.ASSOCIATION "KernelCosine"): a track and an instance
    # match from this cosine similarity of their kernels on
    _C.VIDEO.ASSOCIATION_MIN_SIMILARITY = 0.5

    # TopFormer (Zhang et al., CVPR 2022): the token pyramid, its transformer and the semantic
    # injection (the MobileInst backbone, "build_topformer_backbone")
    cfg.MODEL.TOPFORMER = CN()
    cfg.MODEL.TOPFORMER.ARCH = "B"  # "T", "S" or "B"
    cfg.MODEL.TOPFORMER.DROP_PATH = 0.1
    cfg.MODEL.TOPFORMER.NORM = "BN"  # trained from scratch here: trainable normalisation

    # MobileNetV2 with global tokens ("build_mobilenet_v2_global_backbone"): the bottom-up
    # network from MODEL.MOBILENET_V2, X6 from its stride-32 map pooled to stride 64 through
    # DEPTH attention blocks of TopFormer's kind with CHANNELS channels
    cfg.MODEL.MNV2_GLOBAL = CN()
    cfg.MODEL.MNV2_GLOBAL.CHANNELS = 256
    cfg.MODEL.MNV2_GLOBAL.DEPTH = 2
    cfg.MODEL.MNV2_GLOBAL.NUM_HEADS = 8
    cfg.MODEL.MNV2_GLOBAL.DROP_PATH = 0.0
    cfg.MODEL.MNV2_GLOBAL.NORM = "BN"  # of these new layers (trainable, whatever the MNv2's)
