"""Detectron2's ``DatasetMapper`` that survives unreadable images in training, and the choice of
mapper by ``INPUT.DATASET_MAPPER``."""
import logging

from detectron2.data import DatasetMapper
from detectron2.data.detection_utils import SizeMismatchError
from PIL import Image

from rtinst.methods import find_part

logger = logging.getLogger(__name__)

# What reading an image raises when the file is missing, unreadable, corrupt or truncated (PIL
# reports some malformed files with SyntaxError or EOFError), or not the size its record says.
UNREADABLE_IMAGE_ERRORS = (
    OSError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
    SizeMismatchError,
)


class RobustDatasetMapper(DatasetMapper):
    """``DatasetMapper`` (same arguments and config) for which an image that cannot be read is,
    in training, a skipped sample (a warning naming the file; ``None``, so that the data loader
    draws another one) and, in inference, a ``RuntimeError`` naming the file."""

    def __call__(self, dataset_dict):
        try:
            return super().__call__(dataset_dict)
        except UNREADABLE_IMAGE_ERRORS as e:
            file_name = dataset_dict["file_name"]
            reason = f"{type(e).__name__}: {e}"
            if not self.is_train:
                raise RuntimeError(f"cannot read image {file_name}: {reason}") from e
            logger.warning("Skipping training image %s: %s", file_name, reason)
            return None


def build_dataset_mapper(cfg, is_train: bool):
    """The training mapper named by ``INPUT.DATASET_MAPPER`` (``RobustDatasetMapper`` by
    default; any method can register one: ``rtinst.register_method(dataset_mappers=...)``), or
    the test mapper: the one ``INPUT.TEST_DATASET_MAPPER`` names, by default what
    ``INPUT.DATASET_MAPPER``'s builder gives with ``is_train=False``. The test mapper maps image
    records: the test sets' images and the frames of video evaluation."""
    if not is_train and cfg.INPUT.TEST_DATASET_MAPPER:
        key, name = "INPUT.TEST_DATASET_MAPPER", cfg.INPUT.TEST_DATASET_MAPPER
    else:
        key, name = "INPUT.DATASET_MAPPER", cfg.INPUT.DATASET_MAPPER
    return find_part("dataset_mappers", name, key)(cfg, is_train=is_train)
