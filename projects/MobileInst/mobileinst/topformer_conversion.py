"""hustvl/TopFormer's checkpoints (Zhang et al., CVPR 2022) as state dicts of our
``topformer.TopFormer`` inside a Detectron2 meta-architecture (keys "backbone.<our name>").

Both of the reference's kinds convert: its ImageNet classification checkpoints (``tpm.*``,
``trans.*``, which it loads into its backbone as they are) and its segmentation checkpoints
(the same under ``backbone.``, with the injection modules ``SIM.*``). Every key under ``tpm``,
``trans``, ``SIM`` or ``ppa`` is renamed or is an error naming it; any other key (a decode head,
a classifier, our own names) is returned unchanged.

The reference's attention leaves out the 1 / sqrt(key dim) scale of the logits that ours
applies; its query normalisation's weight and bias are multiplied by sqrt(key dim) here, so the
converted queries (and the attention) are exactly the reference's. Its injection gate is a hard
sigmoid where ours is the paper's sigmoid: converted weights gate slightly differently there.
"""
import logging
import math
import re
from collections import OrderedDict
from typing import Mapping, Optional

import torch

from .topformer import KEY_DIM, LOCAL_FEATURES

__all__ = ["convert_topformer_state_dict", "is_topformer_state_dict"]

logger = logging.getLogger(__name__)

PREFIX = "backbone."  # of the segmentation checkpoints' keys and of ours
MARKER = "tpm.stem.0.c.weight"  # the reference's stem convolution
TOPFORMER_KEY = re.compile(r"(?:backbone\.)?(?:tpm|trans|SIM|ppa)\.(.*)")
NORM_LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
ATTENTION = {"q": "query", "k": "key", "v": "value"}
INJECTION = {"local_embedding": "local_embedding", "global_embedding": "global_embedding",
             "global_act": "global_gate"}
BLOCK = re.compile(r"tpm\.layer(\d+)\.conv\.(\d+)\.(c|bn)\.(\w+)")
ATTN = re.compile(r"trans\.transformer_blocks\.(\d+)\.attn\.(to_[qkv]|proj\.1)\.(c|bn)\.(\w+)")
MLP = re.compile(r"trans\.transformer_blocks\.(\d+)\.mlp\.(fc1|fc2)\.(c|bn)\.(\w+)")
DWCONV = re.compile(r"trans\.transformer_blocks\.(\d+)\.mlp\.dwconv\.(weight|bias)")
SIM = re.compile(r"SIM\.([1-3])\.(local_embedding|global_embedding|global_act)\.(conv|bn)\.(\w+)")


def is_topformer_state_dict(state_dict: Mapping) -> bool:
    """Whether ``state_dict`` is one of hustvl/TopFormer's (classification or segmentation)."""
    return MARKER in state_dict or PREFIX + MARKER in state_dict


def _conv_norm(kind: str, leaf: str) -> Optional[str]:
    """Our ``ConvNormAct`` suffix of a reference conv ("c" / "conv") or norm ("bn") parameter."""
    if kind in ("c", "conv") and leaf == "weight":
        return "0.weight"
    if kind == "bn" and leaf in NORM_LEAVES:
        return f"1.{leaf}"
    return None


def _joined(prefix: str, suffix: Optional[str]) -> Optional[str]:
    return None if suffix is None else prefix + suffix


def _our_name(key: str, expanding_layers: set) -> Optional[str]:
    """Our backbone's name of reference ``key`` (without "backbone."), None if it has none."""
    if key.startswith("tpm.stem.0."):
        kind, _, leaf = key[len("tpm.stem.0."):].partition(".")
        return _joined("token_pyramid.stem.", _conv_norm(kind, leaf))
    match = BLOCK.fullmatch(key)
    if match:
        layer, index, kind, leaf = int(match[1]), int(match[2]), match[3], match[4]
        parts = ("expand", "depthwise", "project") if layer in expanding_layers else (
            "depthwise", "project")
        if layer < 1 or index % 2 or index // 2 >= len(parts):
            return None
        return _joined(f"token_pyramid.blocks.{layer - 1}.{parts[index // 2]}.",
                       _conv_norm(kind, leaf))
    match = ATTN.fullmatch(key)
    if match:
        part = "proj" if match[2] == "proj.1" else ATTENTION[match[2][-1]]
        return _joined(f"transformer.{match[1]}.attention.{part}.", _conv_norm(match[3], match[4]))
    match = MLP.fullmatch(key)
    if match:
        return _joined(f"transformer.{match[1]}.mlp.{match[2]}.", _conv_norm(match[3], match[4]))
    match = DWCONV.fullmatch(key)
    if match:
        return f"transformer.{match[1]}.mlp.dwconv.0.{match[2]}"
    match = SIM.fullmatch(key)
    if match:
        level = LOCAL_FEATURES[int(match[1]) - 1]
        return _joined(f"injections.{level}.{INJECTION[match[2]]}.",
                       _conv_norm(match[3], match[4]))
    return None


def convert_topformer_state_dict(state_dict: Mapping[str, torch.Tensor]
                                 ) -> "OrderedDict[str, torch.Tensor]":
    """``state_dict`` with hustvl/TopFormer's keys renamed to ours under "backbone." (the query
    normalisation rescaled, see the module's docstring), other keys unchanged; a ValueError
    naming a TopFormer key that has no counterpart here."""
    expanding_layers = {int(m[1]) for m in (BLOCK.fullmatch(k.removeprefix(PREFIX))
                                            for k in state_dict) if m and m[2] == "4"}
    converted, renamed = OrderedDict(), 0
    for key, value in state_dict.items():
        if not TOPFORMER_KEY.fullmatch(key):
            converted[key] = value
            continue
        name = _our_name(key.removeprefix(PREFIX), expanding_layers)
        if name is None:
            raise ValueError(f"hustvl/TopFormer key {key!r} has no counterpart in the TopFormer "
                             "backbone: not a checkpoint of TopFormer-T/S/B?")
        if re.fullmatch(r"transformer\.\d+\.attention\.query\.1\.(weight|bias)", name):
            value = value * math.sqrt(KEY_DIM)
        converted[PREFIX + name] = value
        renamed += 1
    if renamed:
        logger.info("Converted a hustvl/TopFormer checkpoint: %d keys renamed", renamed)
    return converted
