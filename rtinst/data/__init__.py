"""rtinst's data: dataset registration (``shapes_train`` / ``shapes_val`` and users' COCO
datasets; the moving-shapes videos ``shapes_video_*``, YouTube-VIS / OVIS splits and users' video
datasets, ``ytvis.py``; registered on import), a data-loading mapper robust to unreadable images
and the video clip mapper."""
from .dataset_mapper import RobustDatasetMapper, build_dataset_mapper
from .datasets import (
    dataset_thing_classes,
    ensure_generated,
    get_cache_dir,
    register_coco_dataset,
    register_from_cfg,
    register_from_spec,
    set_cache_dir,
)
from .ytvis import (
    is_video_dataset,
    register_shapes_videos,
    register_standard_splits,
    register_video_from_spec,
    register_ytvis_dataset,
)

__all__ = [
    "RobustDatasetMapper",
    "build_dataset_mapper",
    "dataset_thing_classes",
    "ensure_generated",
    "get_cache_dir",
    "register_coco_dataset",
    "register_from_cfg",
    "register_from_spec",
    "set_cache_dir",
    "is_video_dataset",
    "register_video_from_spec",
    "register_ytvis_dataset",
]

register_standard_splits()
register_shapes_videos()
