"""The preprocessing the meta-architectures share: normalised images padded into one batch."""
from typing import Dict, List

import torch
from detectron2.structures import ImageList

__all__ = ["normalised_batch"]


def normalised_batch(batched_inputs: List[Dict], pixel_mean: torch.Tensor,
                     pixel_std: torch.Tensor, size_divisibility: int) -> ImageList:
    """The inputs' ``"image"`` tensors as (x - mean) / std on the mean's device, padded (with
    zeros) to a common size divisible by ``size_divisibility``."""
    images = [(x["image"].to(pixel_mean.device) - pixel_mean) / pixel_std for x in batched_inputs]
    return ImageList.from_tensors(images, size_divisibility)
