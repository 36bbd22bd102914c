"""Ground truth and predictions of one image in one form for the report's analyses: COCO
boxes (XYWH) or run-length-encoded masks, contiguous class indices."""
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import pycocotools.mask as mask_util
from detectron2.structures import BoxMode


@dataclass
class ImageInstances:
    """``regions``: a list of XYWH boxes ("bbox") or of RLEs ("segm"); ``classes``: contiguous
    class indices; ``scores``: None for ground truth; ``crowd``: bool per region."""

    regions: list
    classes: np.ndarray
    scores: np.ndarray = None
    crowd: np.ndarray = None

    def __len__(self):
        return len(self.classes)


def _annotation_rle(segmentation, height, width):
    if isinstance(segmentation, list):  # polygons
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return mask_util.frPyObjects(segmentation, height, width)
    return segmentation


def ground_truth(record, task):
    """The instances of a Detectron2 dataset record (``annotations`` with ``bbox`` /
    ``bbox_mode``, ``segmentation`` for "segm", ``category_id`` contiguous)."""
    annotations = record.get("annotations", [])
    if task == "segm":
        regions = [_annotation_rle(a["segmentation"], record["height"], record["width"])
                   for a in annotations]
    else:
        regions = [BoxMode.convert(list(a["bbox"]), a["bbox_mode"], BoxMode.XYWH_ABS)
                   for a in annotations]
    return ImageInstances(regions, np.array([a["category_id"] for a in annotations], int),
                          crowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations]))


def results_by_image(results):
    """{image_id: [result, ...]} of COCO-format results (``coco_instances_results.json``)."""
    grouped = defaultdict(list)
    for result in results:
        grouped[result["image_id"]].append(result)
    return grouped


def contiguous_classes(results, metadata):
    """The contiguous class indices of COCO-format results (dataset category ids, mapped back
    through ``metadata``'s ``thing_dataset_id_to_contiguous_id`` where it has one)."""
    to_contiguous = metadata.get("thing_dataset_id_to_contiguous_id", None)
    classes = [r["category_id"] for r in results]
    return classes if to_contiguous is None else [to_contiguous[c] for c in classes]


def predictions_by_image(grouped, metadata, task):
    """{image_id: ImageInstances} of ``results_by_image``'s groups."""
    key = "segmentation" if task == "segm" else "bbox"
    return {
        image_id: ImageInstances([r[key] for r in found],
                                 np.array(contiguous_classes(found, metadata), int),
                                 np.array([r["score"] for r in found], float))
        for image_id, found in grouped.items()
    }


def iou_matrix(predicted, truth, crowd=None):
    """IoU of every region of ``predicted`` with every region of ``truth`` (lists of boxes or
    RLEs; COCO's intersection over the prediction's area where ``crowd``): (len(predicted),
    len(truth))."""
    if not len(predicted) or not len(truth):
        return np.zeros((len(predicted), len(truth)))
    flags = np.zeros(len(truth), bool) if crowd is None else np.asarray(crowd, bool)
    return np.asarray(mask_util.iou(predicted, truth, flags.astype(np.uint8).tolist()))
