"""YOLACT's data: in training each image is resized to the network input (550 x 550, or its
aspect-preserving equivalent) and flipped, with its annotations, crowd boxes kept as
``crowd_boxes`` for the matching's crowd rule (Sec. 6: IoU with a crowd over 0.7 is neutral);
at test time the image is passed as it is, the model resizing it itself."""
from typing import Tuple

import numpy as np
import torch

from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from rtinst.data.dataset_mapper import RobustDatasetMapper
from rtinst.data.video_mapper import VideoClipMapper

__all__ = ["YOLACTDatasetMapper", "YOLACTResize", "build_yolact_clip_mapper", "input_size_for"]


def input_size_for(height: int, width: int, input_size: int, preserve_aspect_ratio: bool
                   ) -> Tuple[int, int]:
    """The (h, w) an image is resized to: ``input_size`` square, or (the reference's
    ``preserve_aspect_ratio``) about the same area input_size^2 with the image's aspect ratio."""
    if not preserve_aspect_ratio:
        return input_size, input_size
    ratio = (width / height) ** 0.5
    return int(input_size / ratio), int(input_size * ratio)


class YOLACTResize(T.Augmentation):
    """Resize to YOLACT's input size (``input_size_for``)."""

    def __init__(self, input_size: int, preserve_aspect_ratio: bool):
        super().__init__()
        self.input_size = input_size
        self.preserve_aspect_ratio = preserve_aspect_ratio

    def get_transform(self, image):
        height, width = image.shape[:2]
        new_h, new_w = input_size_for(height, width, self.input_size, self.preserve_aspect_ratio)
        return T.ResizeTransform(height, width, new_h, new_w)


def training_augmentations(cfg):
    return [YOLACTResize(cfg.MODEL.YOLACT.INPUT_SIZE, cfg.MODEL.YOLACT.PRESERVE_ASPECT_RATIO),
            T.RandomFlip()]


class YOLACTDatasetMapper(RobustDatasetMapper):
    """``RobustDatasetMapper`` with YOLACT's resize (training) and its crowd boxes."""

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        args = super().from_config(cfg, is_train)
        augmentations = training_augmentations(cfg) if is_train else []
        return {**args, "augmentations": augmentations, "recompute_boxes": False}

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        crowd = [
            transforms.apply_box(np.array([BoxMode.convert(a["bbox"], a["bbox_mode"],
                                                           BoxMode.XYXY_ABS)], dtype=np.float64))[0]
            for a in dataset_dict["annotations"] if a.get("iscrowd", 0)
        ]
        dataset_dict["crowd_boxes"] = torch.as_tensor(np.array(crowd, dtype=np.float32)
                                                      ).reshape(-1, 4)
        super()._transform_annotations(dataset_dict, transforms, image_shape)


def build_yolact_clip_mapper(cfg, is_train):
    """``INPUT.DATASET_MAPPER "YOLACTClipMapper"`` (YolactEdge's video training): rtinst's
    ``VideoClipMapper`` with YOLACT's resize and flip, alike on every frame of a clip; at test
    time ``YOLACTDatasetMapper``'s frames."""
    if not is_train:
        return YOLACTDatasetMapper(cfg, is_train=False)
    return VideoClipMapper(cfg, is_train=True, augmentations=training_augmentations(cfg))
