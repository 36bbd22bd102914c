"""CenterMask (Lee & Park, CVPR 2020): importing this package registers the ``CenterMask``
meta-architecture, ``CenterROIHeads`` and the ``SpatialAttentionMaskHead``, and declares the
method to rtinst with its config keys (``add_centermask_config``). The VoVNetV2 backbones live in
``rtinst.modeling.backbone``."""
from rtinst import register_method
from rtinst.export import AnySizePipeline

from .center_roi_heads import CenterROIHeads
from .centermask import CenterMask
from .config import add_centermask_config
from .mask_scoring import MaskIoUHead
from .roi_assignment import ScaleAdaptiveROIPooler, assign_boxes_to_levels_by_ratio
from .sag_mask_head import SpatialAttention, SpatialAttentionMaskHead

__all__ = ["CenterMask", "CenterROIHeads", "MaskIoUHead", "ScaleAdaptiveROIPooler",
           "SpatialAttention", "SpatialAttentionMaskHead", "add_centermask_config",
           "assign_boxes_to_levels_by_ratio"]

register_method("centermask", add_config=add_centermask_config,
                export_pipelines={"CenterMask": AnySizePipeline})
