"""``VideoClipMapper`` (``INPUT.DATASET_MAPPER "VideoClipMapper"``): a training sample of a video
method is a frame, a pair or a clip of one video, augmented alike. At test time the registered
name gives the frame mapper (``build_video_clip_mapper``): video evaluation and the image test
sets hand the model one frame at a time.

From a video record (``ytvis.py``) it draws ``INPUT.VIDEO.SAMPLING_FRAME_NUM`` distinct frames:
the first uniformly, the others within ``INPUT.VIDEO.SAMPLING_FRAME_RANGE`` frames of it (fewer
where the video is shorter), in time order. The augmentation (``INPUT.*`` as for images) is drawn
once, on the first frame, and applied to every frame. Output:

    {"video_id", "frame_indices": [t, ...], "frames": [{"image": CHW tensor, "instances":
     Instances with gt_boxes, gt_classes, gt_masks and gt_ids (the track ids, linking one
     object across the frames), "file_name", "frame_index", "height", "width"}, ...]}
"""
import copy

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .dataset_mapper import RobustDatasetMapper


def sample_frame_indices(length, count, frame_range, rng=np.random):
    """``count`` distinct frame indices of a video of ``length`` frames, sorted: one uniformly,
    the rest within ``frame_range`` of it (widened to the whole video when that window has too
    few frames)."""
    count = min(count, length)
    first = int(rng.randint(length))
    window = [t for t in range(max(0, first - frame_range), min(length, first + frame_range + 1))
              if t != first]
    if len(window) < count - 1:
        window = [t for t in range(length) if t != first]
    others = rng.choice(window, count - 1, replace=False).tolist() if count > 1 else []
    return sorted([first, *others])


class VideoClipMapper:
    @configurable
    def __init__(self, is_train, *, augmentations, image_format, mask_format="polygon",
                 sampling_frame_num=2, sampling_frame_range=5):
        self.is_train = is_train
        self.augmentations = T.AugmentationList(augmentations)
        self.image_format = image_format
        self.mask_format = mask_format
        self.sampling_frame_num = sampling_frame_num
        self.sampling_frame_range = sampling_frame_range

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {"is_train": is_train, "augmentations": utils.build_augmentation(cfg, is_train),
                "image_format": cfg.INPUT.FORMAT, "mask_format": cfg.INPUT.MASK_FORMAT,
                "sampling_frame_num": cfg.INPUT.VIDEO.SAMPLING_FRAME_NUM,
                "sampling_frame_range": cfg.INPUT.VIDEO.SAMPLING_FRAME_RANGE}

    def _frame_annotations(self, video, t, transforms, image_shape):
        """The objects visible in frame ``t``, transformed, with their track ids."""
        objects = []
        for track in video["annotations"]:
            if track["bboxes"][t] is None or track.get("iscrowd", 0):
                continue
            obj = {"bbox": track["bboxes"][t], "bbox_mode": track["bbox_mode"],
                   "category_id": track["category_id"], "track_id": track["id"]}
            if track["segmentations"][t] is not None:
                obj["segmentation"] = copy.deepcopy(track["segmentations"][t])
            objects.append(utils.transform_instance_annotations(obj, transforms, image_shape))
        return objects

    def _instances(self, objects, image_shape):
        # RLE masks (decoded to arrays by the transform) are bitmasks whatever the config says
        bitmaps = any(isinstance(o.get("segmentation"), np.ndarray) for o in objects)
        instances = utils.annotations_to_instances(
            objects, image_shape, mask_format="bitmask" if bitmaps else self.mask_format
        )
        instances.gt_ids = torch.tensor([o["track_id"] for o in objects], dtype=torch.int64)
        return utils.filter_empty_instances(instances)

    def __call__(self, video):
        if self.is_train:
            indices = sample_frame_indices(video["length"], self.sampling_frame_num,
                                           self.sampling_frame_range)
        else:
            indices = list(range(video["length"]))
        frames, transforms = [], None
        for t in indices:
            image = utils.read_image(video["file_names"][t], format=self.image_format)
            utils.check_image_size({"height": video["height"], "width": video["width"]}, image)
            if transforms is None:  # drawn once per clip
                aug_input = T.AugInput(image)
                transforms = self.augmentations(aug_input)
                image = aug_input.image
            else:
                image = transforms.apply_image(image)
            frame = {"image": torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1))),
                     "file_name": video["file_names"][t], "frame_index": t,
                     "height": video["height"], "width": video["width"]}
            if self.is_train:
                objects = self._frame_annotations(video, t, transforms, image.shape[:2])
                frame["instances"] = self._instances(objects, image.shape[:2])
            frames.append(frame)
        return {"video_id": video["video_id"], "frame_indices": indices, "frames": frames}


def build_video_clip_mapper(cfg, is_train):
    """``INPUT.DATASET_MAPPER "VideoClipMapper"``: ``VideoClipMapper`` in training; at test time
    the frame mapper (``RobustDatasetMapper`` in inference mode) of the image records that the
    test loaders and video evaluation (one record per frame) give."""
    if is_train:
        return VideoClipMapper(cfg, is_train=True)
    return RobustDatasetMapper(cfg, is_train=False)
