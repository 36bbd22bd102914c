"""``gallery.jpg``: validation images with their ground truth beside the model's predictions,
drawn by Detectron2's ``Visualizer``."""
import os

import cv2
import numpy as np
import pycocotools.mask as mask_util
import torch
from detectron2.data.detection_utils import read_image
from detectron2.structures import Boxes, BoxMode, Instances

from .instances import contiguous_classes

TILE_HEIGHT = 256
CAPTION_HEIGHT = 22
PAIRS_PER_ROW = 2
JPEG_QUALITY = 90  # photos: a PNG would be ten times larger


def prediction_instances(results, height, width, metadata, score_threshold):
    """Detectron2 ``Instances`` of one image's COCO-format results scoring at least
    ``score_threshold`` (masks decoded where the results have them)."""
    kept = [r for r in results if r["score"] >= score_threshold]
    instances = Instances((height, width))
    boxes = [BoxMode.convert(list(r["bbox"]), BoxMode.XYWH_ABS, BoxMode.XYXY_ABS) for r in kept]
    instances.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    instances.scores = torch.tensor([r["score"] for r in kept], dtype=torch.float32)
    instances.pred_classes = torch.tensor(contiguous_classes(kept, metadata), dtype=torch.int64)
    if kept and all("segmentation" in r for r in kept):
        masks = mask_util.decode([r["segmentation"] for r in kept])
        instances.pred_masks = torch.from_numpy(np.ascontiguousarray(masks.transpose(2, 0, 1)))
    return instances


def _captioned(image, caption):
    scale = TILE_HEIGHT / image.shape[0]
    image = cv2.resize(image, (max(1, round(image.shape[1] * scale)), TILE_HEIGHT),
                       interpolation=cv2.INTER_AREA)
    strip = np.full((CAPTION_HEIGHT, image.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, caption, (4, CAPTION_HEIGHT - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([strip, image])


def _join(images, axis, gap=12):
    """``images`` side by side (``axis`` 1) or stacked (0), padded white to a common size,
    ``gap`` white pixels apart."""
    size = max(image.shape[1 - axis] for image in images)
    parts = []
    for image in images:
        pad = size - image.shape[1 - axis]
        padding = ((0, pad), (0, 0), (0, 0)) if axis == 1 else ((0, 0), (0, pad), (0, 0))
        parts.append(np.pad(image, padding, constant_values=255))
        gap_shape = (size, gap, 3) if axis == 1 else (gap, size, 3)
        parts.append(np.full(gap_shape, 255, np.uint8))
    return np.concatenate(parts[:-1], axis=axis)


def gallery_pair(record, results, metadata, score_threshold):
    """One image (RGB): the ground truth on the left, the predictions on the right."""
    from detectron2.utils.visualizer import Visualizer  # here: it imports matplotlib

    image = read_image(record["file_name"], format="RGB")
    truth = Visualizer(image, metadata).draw_dataset_dict(record).get_image()
    instances = prediction_instances(results, image.shape[0], image.shape[1], metadata,
                                     score_threshold)
    predicted = Visualizer(image, metadata).draw_instance_predictions(instances).get_image()
    name = os.path.basename(record["file_name"])
    return _join([
        _captioned(truth, f"{name}: {len(record.get('annotations', []))} true"),
        _captioned(predicted, f"{len(instances)} predicted >= {score_threshold:g}"),
    ], axis=1, gap=6)


def write_gallery(path, records, grouped, metadata, score_threshold):
    """The pairs of ``records`` (their results in ``grouped``, {image_id: [result, ...]}) on a
    grid of ``PAIRS_PER_ROW`` columns, saved as ``path`` (its extension gives the format: .jpg,
    .png)."""
    pairs = [gallery_pair(r, grouped.get(r["image_id"], []), metadata, score_threshold)
             for r in records]
    rows = [_join(pairs[i:i + PAIRS_PER_ROW], axis=1)
            for i in range(0, len(pairs), PAIRS_PER_ROW)]
    grid = _join(rows, axis=0)
    if not cv2.imwrite(str(path), grid[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
        raise OSError(f"could not write {path}")
    return path
