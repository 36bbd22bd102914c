"""Synthetic batches (``tiny_models.batch_with_masks``) written out as a COCO dataset (PNG
images and an annotation file), shared by the export tests that evaluate AP."""
import json

import cv2

__all__ = ["hwc", "write_rects_dataset"]


def hwc(batch_item):
    """A batch item's (3, H, W) float image as an (H, W, 3) uint8 array, channels as stored."""
    return batch_item["image"].permute(1, 2, 0).round().byte().numpy()


def write_rects_dataset(folder, batch, input_format="RGB", with_annotations=True):
    """(image folder, annotation file) under ``folder``: ``<i>.png`` for each item of ``batch``
    (whose images are in the model's ``input_format``; the files are BGR, as cv2 reads them),
    each rectangle a box and a polygon, category ids 1-3."""
    images_dir = folder / "images"
    images_dir.mkdir(exist_ok=True)
    images, annotations = [], []
    for i, item in enumerate(batch):
        image = hwc(item)
        cv2.imwrite(str(images_dir / f"{i}.png"), image[:, :, ::-1] if input_format == "RGB"
                    else image)
        height, width = image.shape[:2]
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": height, "width": width})
        instances = item["instances"]
        for box, label in zip(instances.gt_boxes.tensor.tolist(), instances.gt_classes.tolist()):
            x0, y0, x1, y1 = box
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": label + 1,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]],
            })
    categories = [{"id": c, "name": name} for c, name in enumerate(["red", "green", "blue"], 1)]
    path = folder / ("rects.json" if with_annotations else "empty.json")
    path.write_text(json.dumps({"images": images, "categories": categories,
                                "annotations": annotations if with_annotations else []}))
    return images_dir, path
