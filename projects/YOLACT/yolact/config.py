"""YOLACT's and YOLACT++'s config keys (``add_yolact_config``), with the reference's
(dbolya/yolact ``yolact_base_config``) values as defaults; YOLACT++ configs switch on
``MASK_RESCORING``, non-square anchors and the deformable backbone blocks."""
from detectron2.config import CfgNode as CN


def add_yolact_config(cfg):
    cfg.MODEL.YOLACT = CN()
    _C = cfg.MODEL.YOLACT
    _C.NUM_CLASSES = 80
    # Network input (Sec. 4: 550 x 550): every image is resized to a square of this side, or,
    # with PRESERVE_ASPECT_RATIO, to the same area with its own aspect ratio
    _C.INPUT_SIZE = 550
    _C.PRESERVE_ASPECT_RATIO = False
    # FPN (Sec. 3.1 / 6): P3-P5 from MODEL.FPN.IN_FEATURES, then this many stride-2 convolutions
    # on P5's output (P6, P7); bilinear top-down path, ReLU after the 3x3 output convolutions
    _C.FPN_EXTRA_LEVELS = 2
    # Anchors (Sec. 6): pixel scales per level at INPUT_SIZE, aspect ratios w/h per level (one
    # list for all); SQUARE_ANCHORS reproduces the reference base model's every-anchor-square
    _C.ANCHOR_SCALES = [[24], [48], [96], [192], [384]]
    _C.ANCHOR_ASPECT_RATIOS = [[1.0, 0.5, 2.0]]
    _C.SQUARE_ANCHORS = True
    # Prediction head shared across levels (Fig. 4) and ProtoNet on P3 (Fig. 3)
    _C.HEAD_CONV_DIM = 256
    _C.NUM_PROTOTYPES = 32
    _C.PROTONET_CONV_DIM = 256
    _C.PROTONET_NUM_CONVS = 3  # 3x3 convolutions before the 2x upsampling
    # Training (Sec. 3.2 / 6): matching, OHEM, loss weights
    _C.POSITIVE_IOU = 0.5
    _C.NEGATIVE_IOU = 0.4
    _C.CROWD_IOU = 0.7
    _C.NEGATIVES_PER_POSITIVE = 3
    _C.MASKS_PER_IMAGE = 100
    _C.SEMANTIC_LOSS = True
    _C.CONF_LOSS_WEIGHT = 1.0
    _C.BOX_LOSS_WEIGHT = 1.5
    _C.MASK_LOSS_WEIGHT = 6.125
    _C.SEMANTIC_LOSS_WEIGHT = 1.0
    # Inference (Sec. 3.4): "fast" (Fast NMS per class), "cross_class_fast", or "standard"
    _C.NMS_TYPE = "fast"
    _C.NMS_THRESH = 0.5
    _C.NMS_TOP_K = 200  # candidates per class entering (Fast) NMS
    _C.SCORE_THRESH = 0.05
    _C.DETECTIONS_PER_IMAGE = 100
    _C.MASK_THRESHOLD = 0.5
    _C.CROP_PADDING = 1.0  # prototype pixels added around a box when cropping its mask
    # boxes clipped to the image (Detectron2's Boxes.clip); False: the reference's per-side clamp
    # (x1, y1 >= 0; x2 <= w, y2 <= h), which leaves a box wholly outside the image inverted
    _C.CLIP_BOXES = True
    # YOLACT++ (TPAMI 2020, Sec. 3): fast mask re-scoring; deformable blocks every
    # DEFORM_INTERVAL-th block of the stages MODEL.RESNETS.DEFORM_ON_PER_STAGE selects
    _C.MASK_RESCORING = False
    _C.MASK_IOU_CONV_DIMS = [8, 16, 32, 64, 128]
    _C.MASK_IOU_LOSS_WEIGHT = 25.0
    _C.MASK_IOU_MIN_AREA = 25.0  # GT masks of at most this many prototype pixels are not used
    _C.DEFORM_INTERVAL = 1
    add_yolact_edge_config(cfg)


def add_yolact_edge_config(cfg):
    """YolactEdge's keys (``MODEL.YOLACT_EDGE``; the model is ``META_ARCHITECTURE "YolactEdge"``
    with every ``MODEL.YOLACT`` key), the reference's (yolact_edge ``yolact_edge_vid_config``)
    values as defaults."""
    cfg.MODEL.YOLACT_EDGE = CN()
    _C = cfg.MODEL.YOLACT_EDGE
    # Video inference: a keyframe (the whole network) every KEYFRAME_INTERVAL frames; the others
    # run the backbone up to MODEL.FPN.IN_FEATURES[0] (C3) and warp the keyframe's top-down FPN
    # sums of WARP_LEVELS ("p4", "p5"; or "p3", "p4", "p5") by the flow
    _C.KEYFRAME_INTERVAL = 5
    _C.WARP_LEVELS = ["p4", "p5"]
    # FlowNetMini: the C3 laterals reduced to REDUCED_CHANNELS, encoder E, 2E, 4E channels
    _C.FLOW_REDUCED_CHANNELS = 64
    _C.FLOW_ENCODER_CHANNELS = 64
    # the refinement of the warped levels with the current C3 lateral (the reference's SPA)
    _C.SPA = True
    _C.SPA_NORMALIZED = False
    # Training: "video" (frame pairs, INPUT.DATASET_MAPPER "YOLACTClipMapper": the keyframe's
    # features without gradient, the later frame through the whole model and the warped path,
    # YOLACT's losses on both plus the feature-matching loss; backbone and laterals frozen) or
    # "flow" (FlowNetMini alone, on still images moved by a random affine motion, end-point
    # error at strides 8, 16, 32; everything else frozen)
    _C.TRAINING_STAGE = "video"
    _C.FEATURE_MATCHING_WEIGHT = 1.0
    # "flow" stage: the synthetic motion's largest rotation (degrees), scale change (fraction)
    # and translation (fraction of the image side)
    _C.FLOW_MAX_ROTATION = 5.0
    _C.FLOW_MAX_SCALE = 0.05
    _C.FLOW_MAX_TRANSLATION = 0.1
