from .defaults import ConfigError, argument_parser, config_file_path, load_config, setup
from .trainer import Trainer

__all__ = ["ConfigError", "Trainer", "argument_parser", "config_file_path", "load_config", "setup"]
