"""YOLACT (Bolya et al., ICCV 2019), YOLACT++ (TPAMI 2020) and YolactEdge (Liu et al., ICRA 2021):
importing this package registers the ``YOLACT`` and ``YolactEdge`` meta-architectures, their
backbones and dataset mappers, and declares the method to rtinst with its config keys
(``add_yolact_config``) and its converter of the reference's checkpoints
(``convert_checkpoint``)."""
import dataclasses

from rtinst import register_method
from rtinst.benchmark import DetectionFamily

from .checkpoint_conversion import convert_reference_state_dict, is_reference_state_dict
from .config import add_yolact_config
from .dataset_mapper import YOLACTDatasetMapper, build_yolact_clip_mapper
from .export import YOLACTExportPipeline
from .fast_nms import cross_class_fast_nms, fast_nms, standard_nms
from .fpn import build_yolact_mobilenet_v2_fpn_backbone, build_yolact_resnet_fpn_backbone
from .reference_mobilenet_v2 import build_yolact_edge_mobilenet_v2_fpn_backbone
from .yolact import YOLACT, convert_checkpoint
from .yolact_edge import YolactEdge
from .yolact_edge_export import yolact_edge_export_pipeline

__all__ = ["YOLACT", "YOLACTDatasetMapper", "YOLACTExportPipeline", "add_yolact_config",
           "build_yolact_edge_mobilenet_v2_fpn_backbone", "build_yolact_mobilenet_v2_fpn_backbone",
           "build_yolact_resnet_fpn_backbone",
           "convert_checkpoint", "convert_reference_state_dict", "cross_class_fast_nms", "fast_nms",
           "is_reference_state_dict", "standard_nms", "YolactEdge"]

_DETECTION_FAMILY = DetectionFamily(
    score_thresholds=("MODEL.YOLACT.SCORE_THRESH",),
    max_detections=("MODEL.YOLACT.DETECTIONS_PER_IMAGE",),
    candidate_pools=("MODEL.YOLACT.NMS_TOP_K",),
    nms_thresholds=("MODEL.YOLACT.NMS_THRESH",),
)

register_method(
    "yolact", add_config=add_yolact_config, class_count_keys=("MODEL.YOLACT.NUM_CLASSES",),
    dataset_mappers={"YOLACTDatasetMapper": YOLACTDatasetMapper,
                     "YOLACTClipMapper": build_yolact_clip_mapper},
    detection_families={("MODEL.META_ARCHITECTURE", "YOLACT"): _DETECTION_FAMILY,
                        ("MODEL.META_ARCHITECTURE", "YolactEdge"): dataclasses.replace(
                            _DETECTION_FAMILY,
                            keyframe_intervals=("MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL",))},
    export_pipelines={"YOLACT": YOLACTExportPipeline,
                      "YolactEdge": yolact_edge_export_pipeline},
    checkpoint_converters={"YOLACT": convert_checkpoint, "YolactEdge": convert_checkpoint},
)
