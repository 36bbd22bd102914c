"""FCOS (Tian et al., ICCV 2019): head, target assignment, losses, inference, proposal generator."""
from .fcos import FCOS
from .fcos_head import FCOSHead, Scale
from .fcos_inference import FCOSPostprocessor
from .fcos_losses import FCOSLosses, ltrb_iou_loss
from .fcos_targets import FCOSTargetAssigner, centerness_targets, compute_locations

__all__ = [
    "FCOS",
    "FCOSHead",
    "Scale",
    "FCOSTargetAssigner",
    "FCOSLosses",
    "FCOSPostprocessor",
    "compute_locations",
    "centerness_targets",
    "ltrb_iou_loss",
]
