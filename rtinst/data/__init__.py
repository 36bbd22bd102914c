"""rtinst's data: dataset registration (``shapes_train`` / ``shapes_val`` and users' COCO
datasets, registered on import) and a data-loading mapper robust to unreadable images."""
from .dataset_mapper import RobustDatasetMapper, build_dataset_mapper
from .datasets import (
    DatasetError,
    dataset_thing_classes,
    ensure_generated,
    get_cache_dir,
    register_coco_dataset,
    register_from_cfg,
    register_from_spec,
    set_cache_dir,
)

__all__ = [
    "DatasetError",
    "RobustDatasetMapper",
    "build_dataset_mapper",
    "dataset_thing_classes",
    "ensure_generated",
    "get_cache_dir",
    "register_coco_dataset",
    "register_from_cfg",
    "register_from_spec",
    "set_cache_dir",
]
