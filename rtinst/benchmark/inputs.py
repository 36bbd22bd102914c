"""Benchmark inputs: images from a folder (or random ones), resized once, as Detectron2 inputs."""

import logging
import re
from pathlib import Path

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.data.detection_utils import read_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
def list_images(folder):
    """Sorted image files (by extension) directly in ``folder``."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def load_images(folder, count):
    """Up to ``count`` BGR uint8 images from ``folder``; unreadable files are skipped (warning)."""
    images = []
    for path in list_images(folder):
        if len(images) == count:
            break
        try:
            images.append(read_image(str(path), format="BGR"))
        except OSError as e:
            logger.warning(f"skipping unreadable image {path} ({type(e).__name__})")
    if not images:
        raise FileNotFoundError(f"no readable images in {folder}")
    return images


def random_images(count, height=480, width=640, seed=0):
    """``count`` uniform-noise BGR uint8 images (when no image folder is available)."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def _parse_input_size(input_size):
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", str(input_size))
    if not match:
        raise ValueError(f"input size must be SHORT_SIDE or HxW, got {input_size!r}")
    return match


def fixed_input_size(input_size):
    """``(H, W)`` for an ``"HxW"`` input size, None for a shorter-side one (``"512"``)."""
    match = _parse_input_size(input_size)
    return (int(match.group(1)), int(match.group(2))) if match.group(2) else None


def resize_transform(input_size, max_size):
    """``"512"``: shorter side 512, longer side at most ``max_size``; ``"512x640"``: H x W."""
    match = _parse_input_size(input_size)
    if match.group(2):
        return T.Resize((int(match.group(1)), int(match.group(2))))
    return T.ResizeShortestEdge(int(match.group(1)), max_size)


def prepare_inputs(images, resize, image_format, device):
    """Input dicts for a model reading ``image_format`` ("BGR" or "RGB"): the resized CHW uint8
    image on ``device``, and the original height/width (the resolution outputs are returned at)."""
    if image_format not in ("BGR", "RGB"):
        raise ValueError(f"unsupported INPUT.FORMAT {image_format!r} (BGR or RGB)")
    inputs = []
    for image in images:
        pixels = image[:, :, ::-1] if image_format == "RGB" else image
        resized = resize.get_transform(pixels).apply_image(pixels)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1))).to(device)
        inputs.append({"image": tensor, "height": image.shape[0], "width": image.shape[1]})
    return inputs
