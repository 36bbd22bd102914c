"""Every error rtinst raises on purpose, with one base: ``except RtinstError`` catches any of them
(the message names the file, option or part at fault and is meant to be shown as it is, without
a traceback).

Each one also keeps the builtin base it had before it lived here (a ``ConfigError`` is still a
``ValueError``, a ``CheckpointError`` still a ``RuntimeError``), so that ``except ValueError``
code keeps working.

This module imports only the standard library: the command-line tools and the import-light
parts of rtinst (``rtinst/cli.py``, ``rtinst/methods.py``) use it without loading torch.
"""
import signal

__all__ = ["CheckpointError", "ConfigError", "DatasetError", "DemoError", "Detectron2BuildError",
           "MethodError", "RtinstError", "TrainingInterrupted", "UnknownModelFamily"]


class RtinstError(Exception):
    """The base of rtinst's errors."""


class ConfigError(RtinstError, ValueError):
    """A config file or option is wrong; the message names the file or option."""


class DatasetError(RtinstError, ValueError):
    """A dataset cannot be used; the message names the file and what is wrong with it."""


class CheckpointError(RtinstError, RuntimeError):
    """A checkpoint file could not be used; the message names the file and the reason."""


class MethodError(RtinstError, RuntimeError):
    """A method package cannot be imported or declares something another one already does."""


class UnknownModelFamily(RtinstError, ValueError):
    """No registered family describes a model's post-processing (``rtinst.benchmark``)."""


class DemoError(RtinstError):
    """A problem of ``tools/demo.py`` (missing or unreadable input, unusable output) reported
    without a traceback."""


class TrainingInterrupted(BaseException):
    """Training stopped on signal ``signum`` after saving ``checkpoint``
    (``rtinst.engine.interruption``). Not an ``RtinstError``: a ``BaseException`` (as
    ``KeyboardInterrupt``), since Detectron2's training loop reports an ``Exception`` as a crash,
    and ``except Exception`` / ``except RtinstError`` must not swallow it."""

    def __init__(self, signum, iteration, checkpoint):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        super().__init__(
            f"{signal.Signals(signum).name} received: stopped after iteration {iteration}, "
            f"saved {checkpoint}; continue with --resume"
        )


class Detectron2BuildError(RtinstError, RuntimeError):
    """The detectron2 this Python imports is not v0.6 with the source patches rtinst needs
    (``rtinst.utils.detectron2_build``, checked at ``import rtinst``); the message names the
    missing patches and how to install rtinst's build."""
