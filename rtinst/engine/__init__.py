from .defaults import ConfigError, argument_parser, load_config, setup
from .trainer import Trainer

__all__ = ["ConfigError", "Trainer", "argument_parser", "load_config", "setup"]
