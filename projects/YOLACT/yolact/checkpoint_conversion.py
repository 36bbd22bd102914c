"""The reference implementations' checkpoints as our state dicts: dbolya/yolact's
(``yolact_base_54_800000.pth``, ``yolact_resnet50_54_800000.pth``,
``yolact_plus_base_54_800000.pth``, ``yolact_plus_resnet50_54_800000.pth``) and
WisconsinAIVision/yolact_edge's (ResNet and MobileNetV2 image models, and video models with
FlowNetMini and SPA).

Every reference key is renamed or dropped and listed in the report. Renamed: the ResNet
(``backbone.layers.<s>.<b>`` to Detectron2's ``backbone.bottom_up.res<s+2>.<b>``; a DCNv2
block's convolution bias to the deformable conv's bias, which ``fpn._make_deformable`` adds),
the MobileNetV2 (``backbone.layers.<L>...`` to ``ReferenceMobileNetV2``'s stages), the FPN
(``fpn.*``, or YolactEdge's ``fpn_phase_1.*`` / ``fpn_phase_2.*``), ProtoNet, head, semantic,
mask-IoU, flow-net and SPA convolutions. Dropped: ``num_batches_tracked`` counters (Detectron2's
frozen batch norm has none) and MobileNetV2's layers 7 and 8, whose outputs YOLACT does not read.

Strict: a key of no known kind, and a key the converted model needs that the file lacks (a batch
norm's weight, bias or running statistics, a convolution's weight or bias, a part of a ResNet
bottleneck, a deformable block's bias or offsets, an FPN level, a head predictor, a flow-net
layer), are a ``CheckpointError`` naming the file's key.
"""
import re
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

import torch

from rtinst.errors import CheckpointError

from .reference_mobilenet_v2 import STAGES

__all__ = ["ConversionReport", "convert_reference_state_dict", "is_reference_state_dict"]

# a key that only the reference's models have
REFERENCE_MARKER = "prediction_layers.0.conf_layer.weight"
BN_FIELDS = ("weight", "bias", "running_mean", "running_var")
FIELD = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
# the reference MobileNetV2's inverted-residual blocks in its layers 1..7 (mobilenetv2_arch's n)
MOBILENET_BLOCKS = (1, 2, 3, 4, 3, 3, 1)
# every FlowNetMini module of a video checkpoint (ours has exactly these)
FLOW_MODULES = (["flow_net_pre_convs.convs.0.0"]
                + [f"flow_net.conv{k}.{j}.0" for k in (1, 2, 3) for j in (0, 1)]
                + [f"flow_net.pred{k}.{m}" for k in (1, 2, 3) for m in ("conv", "scale", "bias")]
                + [f"flow_net.{m}{k}" for k in (2, 3) for m in ("upfeat", "upflow")])
_NO_BIAS = re.compile(r"flow_net\.(pred\d\.conv|upfeat\d|upflow\d)")  # besides the backbone's


@dataclass
class ConversionReport:
    renamed: Dict[str, str] = field(default_factory=dict)  # reference key -> our key
    dropped: List[str] = field(default_factory=list)  # num_batches_tracked counters
    unused: List[str] = field(default_factory=list)  # layers the model does not have

    def summary(self) -> str:
        return (f"{len(self.renamed)} keys renamed, {len(self.dropped)} batch-norm counters "
                f"dropped, {len(self.unused)} keys of unused layers dropped")


def is_reference_state_dict(state_dict: Mapping) -> bool:
    return REFERENCE_MARKER in state_dict


def _unknown(key: str) -> CheckpointError:
    return CheckpointError(f"{key}: not a key of a dbolya/yolact or yolact_edge model")


def _protonet_names(state_dict: Mapping) -> Dict[int, str]:
    """Reference ``proto_net.<i>`` conv indices -> our ProtoNet modules: the convs before the
    upsampling are ``refine.0.0``, ``tower.0.0``, ...; after it ``tower.<n>.0`` and the final
    1x1 ``tower.<n + 1>`` (n: the upsampling's position in our tower)."""
    indices = sorted({int(k.split(".")[1]) for k in state_dict
                      if re.match(r"proto_net\.\d+\.", k)})
    if not indices:
        return {}
    # the reference's layers alternate conv / ReLU, the upsampling taking two more indices
    gap = next((n for n in range(1, len(indices)) if indices[n] - indices[n - 1] > 2), None)
    if gap is None:
        raise CheckpointError(f"proto_net.{indices[0]}...proto_net.{indices[-1]}: no upsampling "
                              "between the ProtoNet's convolutions")
    before, after = indices[:gap], indices[gap:]
    upsample = len(before) - 1
    names = {before[0]: "refine.0.0"}
    names.update({i: f"tower.{n}.0" for n, i in enumerate(before[1:])})
    names.update({i: f"tower.{upsample + 1 + n}.0" for n, i in enumerate(after[:-1])})
    names[after[-1]] = f"tower.{upsample + len(after)}"
    return names


def _resnet_name(key: str) -> str:
    """Our name of a reference ResNet key."""
    if key == "backbone.conv1.weight":
        return "backbone.bottom_up.stem.conv1.weight"
    if re.fullmatch(r"backbone\.bn1\." + FIELD, key):
        return "backbone.bottom_up.stem.conv1.norm." + key[len("backbone.bn1."):]
    match = re.fullmatch(r"backbone\.layers\.(\d+)\.(\d+)\.((conv[123]|bn[123]|downsample\.[01]|"
                         r"conv2\.conv_offset_mask)\." + FIELD + ")", key)
    if match is None:
        raise _unknown(key)
    stage, block, rest = int(match[1]), match[2], match[3]
    rest = re.sub(r"^bn(\d)\.", r"conv\1.norm.", rest)
    rest = re.sub(r"^downsample\.0\.", "shortcut.", rest)
    rest = re.sub(r"^downsample\.1\.", "shortcut.norm.", rest)
    rest = rest.replace("conv2.conv_offset_mask.", "conv2_offset.")
    return f"backbone.bottom_up.res{stage + 2}.{block}.{rest}"


def _mobilenet_name(key: str) -> Optional[str]:
    """Our name of a reference MobileNetV2 key (torchvision's ``features.<i>`` regrouped into
    ``ReferenceMobileNetV2``'s stages), None for the layers it leaves out."""
    match = re.fullmatch(r"backbone\.layers\.(\d)\.(\d+)\.(.+)", key)
    if match is None:
        raise _unknown(key)
    layer, index, rest = int(match[1]), int(match[2]), match[3]
    if layer in (0, 8) and index < 2 and re.fullmatch(FIELD, rest):
        # a conv + BN + ReLU: <index> is the conv (0) or the BN (1)
        feature, rest = (0 if layer == 0 else 1 + sum(MOBILENET_BLOCKS)), f"{index}.{rest}"
    elif (0 < layer < 8 and index < MOBILENET_BLOCKS[layer - 1]
          and re.fullmatch(r"conv\.\d(\.\d)?\." + FIELD, rest)):
        feature = 1 + sum(MOBILENET_BLOCKS[:layer - 1]) + index
    else:
        raise _unknown(key)
    for stage, start, end, _ in STAGES:
        if start <= feature < end:
            return f"backbone.bottom_up.{stage}.{feature - start}.{rest}"
    return None


def _head_rules(state_dict: Mapping) -> List[Tuple[str, Callable[[re.Match], str]]]:
    """(pattern, our name of a match) for every key outside the backbone."""
    num_lateral = len({k.split(".")[2] for k in state_dict
                       if re.match(r"(fpn|fpn_phase_1)\.lat_layers\.\d+\.", k)})
    protonet = _protonet_names(state_dict)
    head = {"upfeature.0": "upfeature.0", "bbox_layer": "box_pred", "conf_layer": "class_pred",
            "mask_layer": "coefficient_pred"}

    def fpn_level(m):  # the reference's laterals and outputs are coarsest first
        if int(m[2]) >= num_lateral:
            raise _unknown(m[0])
        ours = "lateral_convs" if m[1] == "lat" else "output_convs"
        return f"backbone.{ours}.{num_lateral - 1 - int(m[2])}.{m[3]}"

    def pre_conv(m):
        if m[1] != "0":
            raise CheckpointError(f"{m[0]}: a second FlowNetMini pre-convolution; ours has one")
        return f"flow_net.reduce.0.{m[2]}"

    pred = {"conv": "flow", "scale": "scale", "bias": "bias"}
    return [
        (r"(?:fpn|fpn_phase_1)\.(lat)_layers\.(\d+)\.(weight|bias)", fpn_level),
        (r"(?:fpn|fpn_phase_2)\.(pred)_layers\.(\d+)\.(weight|bias)", fpn_level),
        (r"(?:fpn|fpn_phase_2)\.downsample_layers\.(\d+)\.(weight|bias)",
         lambda m: f"backbone.downsample_convs.{m[1]}.{m[2]}"),
        (r"proto_net\.(\d+)\.(weight|bias)", lambda m: f"protonet.{protonet[int(m[1])]}.{m[2]}"),
        (r"prediction_layers\.0\.(upfeature\.0|bbox_layer|conf_layer|mask_layer)\.(weight|bias)",
         lambda m: f"head.{head[m[1]]}.{m[2]}"),
        (r"semantic_seg_conv\.(weight|bias)", lambda m: f"semantic_pred.{m[1]}"),
        (r"maskiou_net\.maskiou_net\.(\d+)\.(weight|bias)",
         lambda m: f"mask_iou_head.convs.{m[1]}.{m[2]}"),
        (r"flow_net_pre_convs\.convs\.(\d+)\.0\.(weight|bias)", pre_conv),
        (r"flow_net\.conv([123])\.([01])\.0\.(weight|bias)",
         lambda m: f"flow_net.encoder{m[1]}.{m[2]}.0.{m[3]}"),
        (r"flow_net\.pred([123])\.(conv|scale|bias)\.(weight|bias)",
         lambda m: f"flow_net.head{m[1]}.{pred[m[2]]}.{m[3]}"),
        (r"flow_net\.upfeat([23])\.weight", lambda m: f"flow_net.up_features{m[1]}.weight"),
        (r"flow_net\.upflow([23])\.weight", lambda m: f"flow_net.up_flow{m[1]}.weight"),
        (r"spa\.refine_convs\.(\d+)\.0\.(weight|bias)", lambda m: f"spa.refine.{m[1]}.0.{m[2]}"),
    ]


def _is_mobilenet(state_dict: Mapping) -> bool:
    """A MobileNetV2 backbone's keys (``layers.<L>.<i>.conv...``, ``layers.0.<0|1>.<field>``)
    rather than a ResNet's (``layers.<s>.<b>.<conv|bn|downsample>...``)."""
    return any(re.match(r"backbone\.layers\.\d+\.\d+\.(conv\.|[a-z_]+$)", k) for k in state_dict)


def _expected_keys(state_dict: Mapping, mobilenet: bool) -> Set[str]:
    """The reference keys a model with the modules of ``state_dict`` needs: each module's (a
    batch norm's four, a convolution's weight and, where it has one, bias), plus the modules a
    module implies (a ResNet bottleneck's, a deformable block's, an FPN level's, the head's and
    the flow net's)."""
    modules = defaultdict(dict)
    for key, value in state_dict.items():
        module, name = key.rsplit(".", 1)
        modules[module][name] = value
    expected = set()
    for module, fields in modules.items():
        weight = fields.get("weight")
        if ((weight is not None and weight.dim() == 1)
                or fields.keys() & {"running_mean", "running_var", "num_batches_tracked"}):
            expected |= {f"{module}.{f}" for f in BN_FIELDS}
            continue
        expected.add(f"{module}.weight")
        if not (module.startswith("backbone.") or _NO_BIAS.fullmatch(module)) \
                or module.endswith(".conv_offset_mask"):
            expected.add(f"{module}.bias")
    blocks = {m.group() for m in map(re.compile(r"backbone\.layers\.\d+\.\d+").match, modules)
              if m}
    if not mobilenet:
        expected |= {"backbone.conv1.weight"} | {f"backbone.bn1.{f}" for f in BN_FIELDS}
        for block in blocks:
            expected |= {f"{block}.conv{i}.weight" for i in (1, 2, 3)}
            expected |= {f"{block}.bn{i}.{f}" for i in (1, 2, 3) for f in BN_FIELDS}
            if block.endswith(".0"):
                expected |= {f"{block}.downsample.0.weight"}
                expected |= {f"{block}.downsample.1.{f}" for f in BN_FIELDS}
            if (f"{block}.conv2.conv_offset_mask" in modules
                    or "bias" in modules.get(f"{block}.conv2", {})):
                expected |= {f"{block}.conv2.bias", f"{block}.conv2.conv_offset_mask.weight",
                             f"{block}.conv2.conv_offset_mask.bias"}
    phases = any(k.startswith("fpn_phase_") for k in state_dict)
    lateral, output = ("fpn_phase_1", "fpn_phase_2") if phases else ("fpn", "fpn")
    for i in {m[1] for m in (re.fullmatch(r"fpn(?:_phase_[12])?\.(?:lat|pred)_layers\.(\d+)", k)
                             for k in modules) if m}:
        expected |= {f"{lateral}.lat_layers.{i}.{f}" for f in ("weight", "bias")}
        expected |= {f"{output}.pred_layers.{i}.{f}" for f in ("weight", "bias")}
    expected |= {f"prediction_layers.0.{m}.{f}" for m in ("bbox_layer", "conf_layer", "mask_layer")
                 for f in ("weight", "bias")}
    if any(k.startswith(("flow_net.", "flow_net_pre_convs.")) for k in state_dict):
        expected |= {f"{m}.weight" for m in FLOW_MODULES}
        expected |= {f"{m}.bias" for m in FLOW_MODULES if not _NO_BIAS.fullmatch(m)}
    return expected


def convert_reference_state_dict(state_dict: Mapping[str, torch.Tensor]
                                 ) -> Tuple["OrderedDict[str, torch.Tensor]", ConversionReport]:
    """Our state dict and a report of what became of every reference key; a
    ``CheckpointError`` naming the file's keys of no known kind, or missing."""
    mobilenet = _is_mobilenet(state_dict)
    backbone_name = _mobilenet_name if mobilenet else _resnet_name
    rules = [(re.compile(p), name) for p, name in _head_rules(state_dict)]
    report = ConversionReport()
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith("backbone."):
            new = backbone_name(key)
        else:
            for pattern, name in rules:
                match = pattern.fullmatch(key)
                if match:
                    new = name(match)
                    break
            else:
                raise _unknown(key)
        if new is None:
            report.unused.append(key)
        elif key.endswith("num_batches_tracked"):
            report.dropped.append(key)
        else:
            converted[new] = value
            report.renamed[key] = new
    missing = sorted(k for k in _expected_keys(state_dict, mobilenet) - state_dict.keys()
                     if not (mobilenet and k.startswith("backbone.")
                             and _mobilenet_name(k) is None))  # (of an unused layer)
    if missing:
        raise CheckpointError(f"the checkpoint lacks {', '.join(missing)}, which the model needs")
    return converted, report
