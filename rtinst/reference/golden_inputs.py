"""The inputs of the reference golden fixtures and how their outputs are recorded, shared by
``tools/reference/reference_outputs.py`` (on the reference's model) and
``tests/test_reference_golden.py`` (on ours). Imports Detectron2 but nothing of rtinst, so the
runner loads it by file path beside the reference's registrations.

* inference: one seeded 512 x 640 picture (``seeded_image(INFERENCE_SEED)``), fed as Detectron2
  input (BGR float CHW, ``height``/``width``), at the config's score threshold and at 0;
* training: two seeded pictures of different sizes (the second is padded) with their seeded
  objects (no crowd) as ``gt_boxes``/``gt_classes``/``gt_masks``, the masks as polygons (the
  configs' ``INPUT.MASK_FORMAT``; centermask2's mask-IoU targets need them): a rectangle's 4
  corners, an ellipse's 32 boundary points, in the object's box; plus, for AdelaiDet's
  BlendMask, the ``basis_sem`` map its dataset mapper reads from the files made by its
  ``prepare_thing_sem_from_instance.py`` (class + 1 of the rasterised polygons painted in
  annotation order, 0 elsewhere).
"""
import importlib.util
from pathlib import Path

import numpy as np
import torch

from detectron2.structures import Boxes, Instances, PolygonMasks, polygons_to_bitmask

__all__ = ["INFERENCE_SIZE", "TRAINING_SIZES", "TRAINING_TORCH_SEED", "inference_inputs",
           "training_inputs", "training_record", "score_thresholds", "detection_records"]

INFERENCE_SEED = 0
INFERENCE_SIZE = (512, 640)
TRAINING_SEEDS = (1, 2)
TRAINING_SIZES = ((512, 640), (448, 576))
TRAINING_TORCH_SEED = 0  # torch's global seed before the training forward (proposal sampling)


def _seeded_inputs():
    path = Path(__file__).resolve().parent / "seeded_inputs.py"
    spec = importlib.util.spec_from_file_location("rtinst_reference_seeded_inputs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seeded_inputs = _seeded_inputs()


def _image_tensor(bgr: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(bgr.transpose(2, 0, 1)).astype(np.float32))


def inference_inputs():
    """[one Detectron2 input dict] of the seeded inference picture."""
    height, width = INFERENCE_SIZE
    image = seeded_inputs.seeded_image(INFERENCE_SEED, height, width)
    return [{"image": _image_tensor(image), "height": height, "width": width}]


ELLIPSE_POINTS = 32


def _polygon(mask: np.ndarray, box) -> list:
    """[x0, y0, x1, y1, ...] of the seeded object in ``box``: its rectangle when the mask fills
    the box, else the ellipse inscribed in it."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if mask.sum() == (x1 - x0) * (y1 - y0):
        return [x0, y0, x1, y0, x1, y1, x0, y1]
    angles = np.arange(ELLIPSE_POINTS) * 2 * np.pi / ELLIPSE_POINTS
    xs = (x0 + x1) / 2 + (x1 - x0) / 2 * np.cos(angles)
    ys = (y0 + y1) / 2 + (y1 - y0) / 2 * np.sin(angles)
    return np.stack([xs, ys], 1).ravel().tolist()


def training_inputs(with_basis_sem: bool = False):
    """Two Detectron2 training dicts (see the module docstring)."""
    batch = []
    for seed, (height, width) in zip(TRAINING_SEEDS, TRAINING_SIZES):
        image = seeded_inputs.seeded_image(seed, height, width)
        targets = seeded_inputs.seeded_targets(seed, height, width, num_crowd=0)
        polygons = [[_polygon(m, b)] for m, b in zip(targets["masks"], targets["boxes"])]
        instances = Instances(
            (height, width),
            gt_boxes=Boxes(torch.as_tensor(targets["boxes"], dtype=torch.float32)),
            gt_classes=torch.as_tensor(targets["classes"]),
            gt_masks=PolygonMasks(polygons),
        )
        item = {"image": _image_tensor(image), "instances": instances,
                "height": height, "width": width}
        if with_basis_sem:
            semantic = np.zeros((height, width), dtype=np.int64)
            for polygon, cls in zip(polygons, targets["classes"]):
                semantic[polygons_to_bitmask(polygon, height, width)] = int(cls) + 1
            item["basis_sem"] = torch.as_tensor(semantic)
        batch.append(item)
    return batch


def training_record(model, with_basis_sem: bool = False):
    """{"losses": {name: value}, "grad_norms": {parameter: norm}} of ``model`` (put in training
    mode) on the training batch, torch's seed set to ``TRAINING_TORCH_SEED`` first."""
    from detectron2.utils.events import EventStorage

    model.train()
    inputs = training_inputs(with_basis_sem)
    torch.manual_seed(TRAINING_TORCH_SEED)
    with EventStorage():
        losses = model(inputs)
    sum(losses.values()).backward()
    return {"losses": {k: float(v.detach()) for k, v in sorted(losses.items())},
            "grad_norms": {name: float(p.grad.norm()) for name, p in model.named_parameters()
                           if p.grad is not None}}


def score_thresholds(config_threshold: float):
    """{label: MODEL.FCOS.INFERENCE_TH_TEST} of the recorded inference runs."""
    return {"config_threshold": float(config_threshold), "threshold_0": 0.0}


def detection_records(instances: Instances):
    """Per detection: box (XYXY at the picture's size), score, class, mask_score (CenterMask)
    and the pasted mask as COCO RLE."""
    from pycocotools import mask as mask_util

    records = []
    masks = instances.pred_masks.numpy() if instances.has("pred_masks") else None
    for i in range(len(instances)):
        record = {"box": [float(v) for v in instances.pred_boxes.tensor[i]],
                  "score": float(instances.scores[i]),
                  "class": int(instances.pred_classes[i])}
        if instances.has("mask_scores"):
            record["mask_score"] = float(instances.mask_scores[i])
        if masks is not None:
            rle = mask_util.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            record["mask_rle"] = {"size": list(rle["size"]), "counts": rle["counts"].decode()}
        records.append(record)
    return records
