from .defaults import argument_parser, config_file_path, load_config, setup
from .look_forward import (
    LookForwardHook,
    LookForwardParams,
    LookForwardScheduler,
    build_look_forward_scheduler,
    build_validation_batches,
    candidate_settings,
    look_forward,
    phase_at,
)
from .predictor import Predictor
from .trainer import Trainer
from .video_predictor import VideoPredictor

__all__ = [
    "LookForwardHook",
    "LookForwardParams",
    "LookForwardScheduler",
    "Predictor",
    "Trainer",
    "VideoPredictor",
    "argument_parser",
    "build_look_forward_scheduler",
    "build_validation_batches",
    "candidate_settings",
    "config_file_path",
    "load_config",
    "look_forward",
    "phase_at",
    "setup",
]
