"""MobileInst (Zhang et al., "MobileInst: Video Instance Segmentation on the Mobile", AAAI
2024): importing this package registers the ``MobileInst`` meta-architecture, its backbones
(TopFormer, MobileNetV2 with global tokens), its config keys (``add_mobileinst_config``), its
detection family, its ONNX export, its kernel association (``MODEL.TRACKER.ASSOCIATION
"KernelCosine"``) and the converter of hustvl/TopFormer's checkpoints."""
from rtinst import register_method
from rtinst.benchmark import DetectionFamily

from .config import add_mobileinst_config
from .export import MobileInstVideoPipeline, mobileinst_export_pipeline
from .kernel_association import KernelCosine
from .mobileinst import MobileInst
from .mobilenet_global import build_mobilenet_v2_global_backbone
from .topformer import build_topformer_backbone
from .topformer_conversion import convert_topformer_state_dict

__all__ = ["KernelCosine", "MobileInst", "MobileInstVideoPipeline", "add_mobileinst_config",
           "build_mobilenet_v2_global_backbone", "build_topformer_backbone",
           "convert_topformer_state_dict", "mobileinst_export_pipeline"]

register_method(
    "mobileinst",
    add_config=add_mobileinst_config,
    class_count_keys=("MODEL.MOBILEINST.NUM_CLASSES",),
    # instances are the top-k queries scoring at least the threshold (no NMS)
    detection_families={("MODEL.META_ARCHITECTURE", "MobileInst"): DetectionFamily(
        score_thresholds=("MODEL.MOBILEINST.TEST.SCORE_THRESH",),
        max_detections=("MODEL.MOBILEINST.TEST.TOPK",),
        keyframe_intervals=("MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES",),
    )},
    export_pipelines={"MobileInst": mobileinst_export_pipeline},
    track_associations={"KernelCosine": KernelCosine},
    checkpoint_converters={"MobileInst": convert_topformer_state_dict},
)
