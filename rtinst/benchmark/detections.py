"""Which config keys set each model family's test-time score threshold and detection count.

``FAMILIES`` is keyed by ``(config key, value)`` identifying a family, e.g.
``("MODEL.META_ARCHITECTURE", "RetinaNet")`` or ``("MODEL.PROPOSAL_GENERATOR.NAME", "FCOS")``;
a new method adds its entry with ``register_family``. Every entry that matches a config applies
(a model can combine families, e.g. FCOS boxes with an R-CNN mask head).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class PostprocessKeys:
    """Config keys of one family's test-time post-processing."""

    score_thresholds: tuple = ()  # minimum scores: 0 keeps every candidate
    max_detections: tuple = ()  # detections kept per image: set to K
    candidate_pools: tuple = ()  # candidates kept before NMS: raised to at least K
    nms_thresholds: tuple = ()  # NMS IoU thresholds: 1.0 when NMS alone could leave fewer than K


FAMILIES = {}


class UnknownModelFamily(ValueError):
    """No registered family describes a model's post-processing."""


def register_family(key, value, keys):
    """Models whose config has ``key == value`` are post-processed as ``keys`` say."""
    FAMILIES[(key, value)] = keys


register_family(
    "MODEL.META_ARCHITECTURE",
    "RetinaNet",
    PostprocessKeys(
        score_thresholds=("MODEL.RETINANET.SCORE_THRESH_TEST",),
        max_detections=("TEST.DETECTIONS_PER_IMAGE",),
        candidate_pools=("MODEL.RETINANET.TOPK_CANDIDATES_TEST",),
    ),
)
register_family(
    "MODEL.META_ARCHITECTURE",
    "GeneralizedRCNN",
    PostprocessKeys(
        score_thresholds=("MODEL.ROI_HEADS.SCORE_THRESH_TEST",),
        max_detections=("TEST.DETECTIONS_PER_IMAGE",),
    ),
)
register_family(
    "MODEL.PROPOSAL_GENERATOR.NAME",
    "FCOS",
    PostprocessKeys(
        score_thresholds=("MODEL.FCOS.INFERENCE_TH_TEST",),
        max_detections=("MODEL.FCOS.POST_NMS_TOPK_TEST",),
        candidate_pools=("MODEL.FCOS.PRE_NMS_TOPK_TEST",),
        nms_thresholds=("MODEL.FCOS.NMS_TH",),
    ),
)
# BlitzMask: instances are the top-K heatmap peaks above the score threshold (no NMS); with
# threshold 0 there are exactly K whenever the heatmap has at least K local maxima
register_family(
    "MODEL.META_ARCHITECTURE",
    "BlitzMask",
    PostprocessKeys(
        score_thresholds=("MODEL.BLITZMASK.TEST.SCORE_THRESH",),
        max_detections=("MODEL.BLITZMASK.TEST.TOPK",),
    ),
)


def _get(cfg, key):
    for name in key.split("."):
        cfg = cfg.get(name) if hasattr(cfg, "get") else None
    return cfg


def matching_families(cfg):
    """``{family value: PostprocessKeys}`` for every registered family ``cfg`` belongs to."""
    return {value: keys for (key, value), keys in FAMILIES.items() if _get(cfg, key) == value}


def set_score_threshold(cfg, threshold):
    """Sets the test-time score thresholds of ``cfg``'s families; returns the family names
    (empty when none is registered: then only the caller's own filtering applies)."""
    families = matching_families(cfg)
    for keys in families.values():
        cfg.merge_from_list(
            [item for key in keys.score_thresholds for item in (key, float(threshold))]
        )
    return sorted(families)


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
            "rtinst.benchmark.detections.register_family"
        )
    for keys in families.values():
        settings = [(key, 0.0) for key in keys.score_thresholds]
        settings += [(key, int(k)) for key in keys.max_detections]
        settings += [(key, max(int(_get(cfg, key)), int(k))) for key in keys.candidate_pools]
        settings += [(key, 1.0) for key in keys.nms_thresholds]
        cfg.merge_from_list([item for pair in settings for item in pair])
    return sorted(families)
