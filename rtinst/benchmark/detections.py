"""Which config keys set each model family's test-time score threshold and detection count.

A family is identified by a ``(config key, value)`` pair, e.g. ``("MODEL.META_ARCHITECTURE",
"RetinaNet")`` or ``("MODEL.PROPOSAL_GENERATOR.NAME", "FCOS")``, and described by a
``DetectionFamily``. Methods declare theirs with ``rtinst.register_method(detection_families=
{(key, value): DetectionFamily(...)})``; Detectron2's RetinaNet and R-CNN and rtinst's FCOS are
``BUILTIN_FAMILIES``. Every family that matches a config applies (a model can combine families,
e.g. FCOS boxes with an R-CNN mask head).
"""

import argparse
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from rtinst.config import config_value
from rtinst.errors import UnknownModelFamily
from rtinst.methods import METHODS
from rtinst.modeling.fcos import FCOSHead


@dataclass(frozen=True)
class DetectionFamily:
    """Config keys of one family's test-time post-processing, and how to make an untrained
    model of the family return boxes worth post-processing."""

    score_thresholds: tuple = ()  # minimum scores: 0 keeps every candidate
    max_detections: tuple = ()  # detections kept per image: set to K
    candidate_pools: tuple = ()  # candidates kept before NMS: raised to at least K
    nms_thresholds: tuple = ()  # NMS IoU thresholds: 1.0 when NMS alone could leave fewer than K
    # a video model's keyframe interval (frames per keyframe; 1: every frame is one), which
    # ``tools/demo.py --keyframe-interval`` sets
    keyframe_intervals: tuple = ()
    # called on a randomly initialised model before it is measured; returns what it changed
    # (for the benchmark's record) or None
    prepare_untrained: Optional[Callable[[torch.nn.Module], Optional[str]]] = None


@torch.no_grad()
def open_untrained_fcos_boxes(model):
    """An untrained FCOS head regresses relu(~0) = 0 distances: empty boxes, which Detectron2's
    post-processing drops, so fewer than the requested K detections would be timed. A bias of one
    stride on each side gives every location a box two strides wide, as sized as FCOS's targets
    on that level."""
    heads = [m for m in model.modules() if isinstance(m, FCOSHead) and m.norm_reg_targets]
    for head in heads:
        head.bbox_pred.bias.fill_(1.0)
    return "FCOS boxes opened to two strides" if heads else None


BUILTIN_FAMILIES = {
    ("MODEL.META_ARCHITECTURE", "RetinaNet"): DetectionFamily(
        score_thresholds=("MODEL.RETINANET.SCORE_THRESH_TEST",),
        max_detections=("TEST.DETECTIONS_PER_IMAGE",),
        candidate_pools=("MODEL.RETINANET.TOPK_CANDIDATES_TEST",),
    ),
    ("MODEL.META_ARCHITECTURE", "GeneralizedRCNN"): DetectionFamily(
        score_thresholds=("MODEL.ROI_HEADS.SCORE_THRESH_TEST",),
        max_detections=("TEST.DETECTIONS_PER_IMAGE",),
    ),
    ("MODEL.PROPOSAL_GENERATOR.NAME", "FCOS"): DetectionFamily(
        score_thresholds=("MODEL.FCOS.INFERENCE_TH_TEST",),
        max_detections=("MODEL.FCOS.POST_NMS_TOPK_TEST",),
        candidate_pools=("MODEL.FCOS.PRE_NMS_TOPK_TEST",),
        nms_thresholds=("MODEL.FCOS.NMS_TH",),
        prepare_untrained=open_untrained_fcos_boxes,
    ),
}


def detection_counts(text):
    """``"10,50,100"`` -> (10, 50, 100): the benchmark tools' ``--num-detections`` type."""
    try:
        counts = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K1,K2,..., got {text!r}") from None
    if min(counts) < 1:
        raise argparse.ArgumentTypeError("detection counts must be positive")
    return counts


def _get(cfg, key):
    for name in key.split("."):
        cfg = cfg.get(name) if hasattr(cfg, "get") else None
    return cfg


def matching_families(cfg):
    """``{family value: DetectionFamily}`` for every registered family ``cfg`` belongs to."""
    return {
        value: family
        for method in METHODS.values()
        for (key, value), family in method.detection_families.items()
        if _get(cfg, key) == value
    }


def set_score_threshold(cfg, threshold):
    """Lowers the test-time score thresholds of ``cfg``'s families to ``threshold`` where they
    are higher, never raising one: a family's threshold may apply to something other than the
    final score (FCOS's to the class probability, before the centerness that its score
    multiplies in), so raising it would drop detections that pass ``threshold``; the caller
    filters the final scores. Returns the family names (empty when none is registered: then
    only the caller's own filtering applies)."""
    families = matching_families(cfg)
    for family in families.values():
        cfg.merge_from_list([
            item for key in family.score_thresholds
            for item in (key, min(float(threshold), config_value(cfg, key)))
        ])
    return sorted(families)


def set_keyframe_interval(cfg, interval):
    """Sets the keyframe interval of ``cfg``'s families to ``interval``; returns the keys set
    (empty when the model has none: it is no keyframe model)."""
    keys = [key for family in matching_families(cfg).values()
            for key in family.keyframe_intervals]
    cfg.merge_from_list([item for key in keys for item in (key, int(interval))])
    return keys


def fix_detection_count(cfg, k):
    """Makes the model built from ``cfg`` return ``k`` detections per image whatever its weights:
    no score threshold, at least ``k`` candidates, at most ``k`` outputs. Returns the family names.
    Raises UnknownModelFamily for a model no registered family describes. Empty boxes, which
    Detectron2's ``detector_postprocess`` drops after these limits, can still leave fewer than ``k``
    (e.g. zero-size boxes of an untrained FCOS head): callers check the achieved count."""
    families = matching_families(cfg)
    if not families:
        raise UnknownModelFamily(
            f"no registered family for META_ARCHITECTURE={cfg.MODEL.META_ARCHITECTURE} "
            f"(PROPOSAL_GENERATOR={cfg.MODEL.PROPOSAL_GENERATOR.NAME}): add one with "
            "rtinst.register_method(detection_families=...)"
        )
    for family in families.values():
        settings = [(key, 0.0) for key in family.score_thresholds]
        settings += [(key, int(k)) for key in family.max_detections]
        settings += [(key, max(int(_get(cfg, key)), int(k))) for key in family.candidate_pools]
        settings += [(key, 1.0) for key in family.nms_thresholds]
        cfg.merge_from_list([item for pair in settings for item in pair])
    return sorted(families)


def prepare_untrained(cfg, model):
    """Runs the ``prepare_untrained`` of ``cfg``'s families on the randomly initialised
    ``model``; returns what they changed."""
    changes = [family.prepare_untrained(model) for family in matching_families(cfg).values()
               if family.prepare_untrained is not None]
    return [change for change in changes if change]
