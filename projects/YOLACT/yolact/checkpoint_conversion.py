"""The reference implementation's checkpoints (dbolya/yolact's ``yolact_base_54_800000.pth``,
``yolact_resnet50_54_800000.pth``, ``yolact_plus_base_54_800000.pth``,
``yolact_plus_resnet50_54_800000.pth``) as our state dicts.

Every reference key is either renamed (ResNet ``backbone.layers.<s>.<b>`` to Detectron2's
``backbone.bottom_up.res<s+2>.<b>``, FPN, ProtoNet, head, semantic and mask-IoU convolutions) or
accounted for: ``num_batches_tracked`` counters are dropped (Detectron2's frozen batch norm has
none) and a DCNv2 block's convolution bias, which Detectron2's deformable block does not have,
is folded into the following batch norm's running mean (exact for frozen / eval-mode batch
norm; in training-mode batch norm a bias before it cancels anyway). A key of no known kind is
an error naming it.
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Tuple

import torch

__all__ = ["ConversionReport", "convert_reference_state_dict", "is_reference_state_dict"]

# a key that only the reference's models have
REFERENCE_MARKER = "prediction_layers.0.conf_layer.weight"
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")


@dataclass
class ConversionReport:
    renamed: Dict[str, str] = field(default_factory=dict)  # reference key -> our key
    dropped: List[str] = field(default_factory=list)  # num_batches_tracked counters
    folded: List[str] = field(default_factory=list)  # DCN biases folded into batch norm

    def summary(self) -> str:
        return (f"{len(self.renamed)} keys renamed, {len(self.folded)} deformable-conv biases "
                f"folded into batch norm, {len(self.dropped)} batch-norm counters dropped")


def is_reference_state_dict(state_dict: Mapping) -> bool:
    return REFERENCE_MARKER in state_dict


def _protonet_names(state_dict: Mapping) -> Dict[int, str]:
    """Reference ``proto_net.<i>`` conv indices -> our ProtoNet modules: the convs before the
    upsampling are ``refine.0.0``, ``tower.0.0``, ...; after it ``tower.<n>.0`` and the final
    1x1 ``tower.<n + 1>`` (n: the upsampling's position in our tower)."""
    indices = sorted({int(k.split(".")[1]) for k in state_dict if k.startswith("proto_net.")})
    # the reference's layers alternate conv / ReLU, the upsampling taking two more indices
    gap = next(n for n in range(1, len(indices)) if indices[n] - indices[n - 1] > 2)
    before, after = indices[:gap], indices[gap:]
    upsample = len(before) - 1
    names = {before[0]: "refine.0.0"}
    names.update({i: f"tower.{n}.0" for n, i in enumerate(before[1:])})
    names.update({i: f"tower.{upsample + 1 + n}.0" for n, i in enumerate(after[:-1])})
    names[after[-1]] = f"tower.{upsample + len(after)}"
    return names


def _backbone_name(key: str) -> str:
    """Our name of a reference ResNet key (without the DCN cases)."""
    if key.startswith("backbone.conv1."):
        return "backbone.bottom_up.stem.conv1." + key[len("backbone.conv1."):]
    if key.startswith("backbone.bn1."):
        return "backbone.bottom_up.stem.conv1.norm." + key[len("backbone.bn1."):]
    match = re.fullmatch(r"backbone\.layers\.(\d+)\.(\d+)\.(.+)", key)
    if match is None:
        raise KeyError(key)
    stage, block, rest = int(match[1]), match[2], match[3]
    prefix = f"backbone.bottom_up.res{stage + 2}.{block}."
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    rest = rest.replace("conv2.conv_offset_mask.", "conv2_offset.")
    return prefix + rest


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]
                                 ) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Our state dict and a report of what became of every reference key; a ``KeyError`` naming
    a key of no known kind."""
    report = ConversionReport()
    converted = OrderedDict()
    num_lateral = len({k.split(".")[2] for k in state_dict if k.startswith("fpn.lat_layers.")})
    protonet = _protonet_names(state_dict)
    head = {"upfeature.0": "upfeature.0", "bbox_layer": "box_pred", "conf_layer": "class_pred",
            "mask_layer": "coefficient_pred"}
    dcn_biases = {}
    for key, value in state_dict.items():
        parts = key.split(".")
        if key.endswith("num_batches_tracked"):
            report.dropped.append(key)
            continue
        if key.startswith("backbone."):
            if re.fullmatch(r"backbone\.layers\.\d+\.\d+\.conv2\.bias", key):
                dcn_biases[key] = value
                continue
            new = _backbone_name(key)
        elif parts[0] == "fpn":
            kind, index = parts[1], int(parts[2])
            ours = {"lat_layers": ("lateral_convs", num_lateral - 1 - index),
                    "pred_layers": ("output_convs", num_lateral - 1 - index),
                    "downsample_layers": ("downsample_convs", index)}.get(kind)
            if ours is None:
                raise KeyError(key)
            new = f"backbone.{ours[0]}.{ours[1]}.{parts[3]}"
        elif parts[0] == "proto_net":
            new = f"protonet.{protonet[int(parts[1])]}.{parts[2]}"
        elif parts[0] == "prediction_layers" and parts[1] == "0":
            module = ".".join(parts[2:-1])
            if module not in head:
                raise KeyError(key)
            new = f"head.{head[module]}.{parts[-1]}"
        elif parts[0] == "semantic_seg_conv":
            new = f"semantic_pred.{parts[1]}"
        elif parts[:2] == ["maskiou_net", "maskiou_net"]:
            new = f"mask_iou_head.convs.{parts[2]}.{parts[3]}"
        else:
            raise KeyError(key)
        converted[new] = value
        report.renamed[key] = new
    for key, bias in dcn_biases.items():
        norm = _backbone_name(key.replace("conv2.bias", "bn2.running_mean"))
        if norm not in converted:
            raise KeyError(f"{key}: no batch norm after this deformable convolution")
        converted[norm] = converted[norm] - bias
        report.folded.append(key)
    return converted, report
