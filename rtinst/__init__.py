"""rtinst: what the real-time instance-segmentation methods share (FCOS, backbones, layers,
data, evaluation, run reports, export, benchmarking, video tracking), and the plug-in registry through which
the methods join it (``register_method``, ``rtinst/methods.py``). Importing it registers rtinst's Detectron2
components and imports every installed method package, which registers its own."""
from .utils.detectron2_build import check_detectron2; check_detectron2()  # noqa: E702
from .config import add_rtinst_config, get_cfg
from .errors import (
    CheckpointError,
    ConfigError,
    DatasetError,
    DemoError,
    MethodError,
    RtinstError,
    TrainingInterrupted,
    UnknownModelFamily,
)
from .methods import load_methods, register_method
from . import data, modeling  # noqa: F401  (fill Detectron2's registries and DatasetCatalog)
from .benchmark.detections import BUILTIN_FAMILIES
from .data.dataset_mapper import RobustDatasetMapper
from .data.train_loader import repeat_factor_epochs, shuffled_epochs
from .data.video_mapper import build_video_clip_mapper
from .evaluation import build_coco_evaluator, build_ytvis_evaluator
from .export.pipeline import AnySizePipeline
from .engine.look_forward import SCHEDULER_NAME as LOOK_FORWARD, build_look_forward_scheduler
from .solver import build_detectron2_lr_scheduler
from .video import MaskIoU, OnlineTracker

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "DemoError", "MethodError",
           "RtinstError", "TrainingInterrupted", "UnknownModelFamily", "add_rtinst_config",
           "get_cfg", "load_methods", "register_method"]

register_method(
    "rtinst",
    class_count_keys=("MODEL.FCOS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES",
                      "MODEL.ROI_HEADS.NUM_CLASSES"),
    detection_families=BUILTIN_FAMILIES,
    evaluators={"coco": build_coco_evaluator, "ytvis": build_ytvis_evaluator},
    dataset_mappers={"RobustDatasetMapper": RobustDatasetMapper,
                     "VideoClipMapper": build_video_clip_mapper},
    train_samplers={"TrainingSampler": shuffled_epochs,
                    "RepeatFactorTrainingSampler": repeat_factor_epochs},
    track_associations={"MaskIoU": MaskIoU},
    export_pipelines={"OneStageDetector": AnySizePipeline},
    lr_schedulers={"WarmupMultiStepLR": build_detectron2_lr_scheduler,
                   "WarmupCosineLR": build_detectron2_lr_scheduler,
                   LOOK_FORWARD: build_look_forward_scheduler},
    trackers={"OnlineTracker": OnlineTracker},
)
load_methods()
