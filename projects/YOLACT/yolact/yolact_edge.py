"""YolactEdge (Liu et al., ICRA 2021): YOLACT on video that computes the expensive features only on
keyframes (Fig. 3).

A keyframe is YOLACT exactly (the image path, ``forward``, is YOLACT's); the video path
(``video_state`` / ``forward_frame``, rtinst's video contract) keeps the last keyframe's top-down
FPN sums and C3 lateral, and on the next ``KEYFRAME_INTERVAL - 1`` frames runs the partial
feature transform (``partial_feature_transform.py``) with FlowNetMini's flow (``flow_net.py``).

Training (``MODEL.YOLACT_EDGE.TRAINING_STAGE``), as the reference's two stages after YOLACT:

* "flow": FlowNetMini alone (everything else frozen) on still images moved by a random affine
  motion, the end-point error at strides 8, 16, 32 (``flow_pretraining.py``): ``loss_flow``;
* "video": pairs (keyframe, later annotated frame) of one video. The keyframe's features without
  gradient; the annotated frame through the whole model (YOLACT's losses) and through the warped
  path (the same losses, ``loss_warp_*``) plus the feature-matching loss: the mean of 1 - cosine
  between the warped and the computed P4 / P5 sums, before and after their output convolution
  (whose weights get no gradient from it). Backbone and laterals frozen, as the reference's
  ``fine_tune_layers``. Deviation: the reference passes P5 through P3's output convolution for
  the second term (an index off by one); here each level goes through its own.
"""
from typing import Dict, List, NamedTuple, Tuple

import torch
from torch import nn
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList

from rtinst.modeling.backbone import run_stages

from .flow_net import FlowNetMini
from .flow_pretraining import affine_pairs, end_point_error, pixels_to_reference_units
from .partial_feature_transform import SPA, warp_compensated
from .yolact import YOLACT

__all__ = ["KeyframeFeatures", "YolactEdge", "YolactEdgeState"]

TRAINING_STAGES = ("video", "flow")


class KeyframeFeatures(NamedTuple):
    """What a non-keyframe needs of its keyframe."""

    sums: Tuple[torch.Tensor, ...]  # the top-down FPN sums of the warped levels, finest first
    lateral: torch.Tensor  # the C3 lateral, FlowNetMini's keyframe input


class YolactEdgeState(NamedTuple):
    keyframe: KeyframeFeatures
    since_keyframe: int  # frames run since the keyframe (0 on the keyframe)


@META_ARCH_REGISTRY.register()
class YolactEdge(YOLACT):
    """YOLACT plus FlowNetMini (``flow_net``), the optional SPA refinement (``spa``) and the
    keyframe policy; outputs as YOLACT's, and in video ``"keyframe"``: whether the frame was
    one."""

    @configurable
    def __init__(self, *, flow_net: FlowNetMini, spa, keyframe_interval: int,
                 warp_levels: List[str], training_stage: str, feature_matching_weight: float,
                 flow_motion: Tuple[float, float, float], **kwargs):
        super().__init__(**kwargs)
        self.flow_net = flow_net
        self.spa = spa
        self.keyframe_interval = keyframe_interval
        levels = [f"p{i + 3}" for i in range(len(self.backbone.in_features))]
        if list(warp_levels) not in (levels[1:], levels):
            raise ValueError(f"MODEL.YOLACT_EDGE.WARP_LEVELS must be {levels[1:]} (P3 rebuilt "
                             f"from the current frame) or {levels}, got {list(warp_levels)}")
        self.warps_finest = len(warp_levels) == len(levels)
        self.num_warped = len(warp_levels)
        if training_stage not in TRAINING_STAGES:
            raise ValueError(f"MODEL.YOLACT_EDGE.TRAINING_STAGE must be one of {TRAINING_STAGES}, "
                             f"got {training_stage!r}")
        self.training_stage = training_stage
        self.feature_matching_weight = feature_matching_weight
        self.flow_motion = flow_motion
        self._freeze_for_stage()

    @classmethod
    def from_config(cls, cfg):
        args = super().from_config(cfg)
        ecfg = cfg.MODEL.YOLACT_EDGE
        if ecfg.KEYFRAME_INTERVAL < 1:
            raise ValueError(f"MODEL.YOLACT_EDGE.KEYFRAME_INTERVAL must be >= 1, got "
                             f"{ecfg.KEYFRAME_INTERVAL}")
        channels = cfg.MODEL.FPN.OUT_CHANNELS
        num_levels = len(cfg.MODEL.FPN.IN_FEATURES)
        return {
            **args,
            "flow_net": FlowNetMini(channels, ecfg.FLOW_REDUCED_CHANNELS,
                                    ecfg.FLOW_ENCODER_CHANNELS),
            "spa": SPA(channels, num_levels - 1, ecfg.SPA_NORMALIZED) if ecfg.SPA else None,
            "keyframe_interval": ecfg.KEYFRAME_INTERVAL,
            "warp_levels": list(ecfg.WARP_LEVELS),
            "training_stage": ecfg.TRAINING_STAGE,
            "feature_matching_weight": ecfg.FEATURE_MATCHING_WEIGHT,
            "flow_motion": (ecfg.FLOW_MAX_ROTATION, ecfg.FLOW_MAX_SCALE,
                            ecfg.FLOW_MAX_TRANSLATION),
        }

    def frozen_modules(self) -> List[nn.Module]:
        """What the reference's stage does not train: the backbone and the laterals ("video");
        all but FlowNetMini ("flow")."""
        if self.training_stage == "flow":
            return [m for name, m in self.named_children() if name != "flow_net"]
        return [self.backbone.bottom_up, self.backbone.lateral_convs]

    def _freeze_for_stage(self):
        """No gradient for the frozen modules; ``train()`` keeps them in eval mode (batch norm on
        its running statistics, as the reference's frozen modules): the same modules as
        YOLACT's, so that a keyframe is YOLACT to the bit."""
        for module in self.frozen_modules():
            for parameter in module.parameters():
                parameter.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    # features
    def keyframe_features(self, images: torch.Tensor
                          ) -> Tuple[Dict[str, torch.Tensor], KeyframeFeatures]:
        """The whole backbone and FPN on a normalised batch: the pyramid and what the next
        frames keep."""
        fpn = self.backbone
        laterals = fpn.laterals(fpn.bottom_up(images))
        sums = fpn.top_down(laterals)
        kept = KeyframeFeatures(tuple(sums[len(sums) - self.num_warped:]), laterals[0])
        return fpn.output_levels(sums), kept

    def current_lateral(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone up to its finest FPN input (C3) and that level's lateral."""
        fpn = self.backbone
        finest = fpn.in_features[0]
        return fpn.lateral_convs[0](run_stages(fpn.bottom_up, images, stop=finest)[finest])

    def warped_sums(self, lateral: torch.Tensor, keyframe: KeyframeFeatures) -> List[torch.Tensor]:
        """The partial feature transform: the top-down sums of the current frame from its C3
        ``lateral`` and the keyframe's warped sums."""
        flows = self.flow_net(lateral, keyframe.lateral, finest=self.warps_finest)
        warped = [warp_compensated(s, p) for s, p in zip(keyframe.sums, flows[-self.num_warped:])]
        sums = warped if self.warps_finest else \
            [self.backbone.add_lateral(lateral, warped[0])] + warped
        if self.spa is not None:
            sums = sums[:1] + self.spa(lateral, sums[1:])
        return sums

    def warped_features(self, images: torch.Tensor, keyframe: KeyframeFeatures
                        ) -> Dict[str, torch.Tensor]:
        """The pyramid of a non-keyframe."""
        return self.backbone.output_levels(self.warped_sums(self.current_lateral(images),
                                                            keyframe))

    # the video contract (rtinst.video.loop)
    def video_state(self):
        return None

    def forward_frame(self, inputs: Dict, state):
        """One frame: a keyframe (YOLACT, its features kept) when ``state`` is None or
        ``keyframe_interval`` frames have run since the last; otherwise the warped path."""
        images = ImageList.from_tensors([self.resize_and_normalize(inputs["image"])])
        keyframe = state is None or state.since_keyframe + 1 >= self.keyframe_interval
        if keyframe:
            features, kept = self.keyframe_features(images.tensor)
            state = YolactEdgeState(kept, 0)
        else:
            features = self.warped_features(images.tensor, state.keyframe)
            state = YolactEdgeState(state.keyframe, state.since_keyframe + 1)
        outputs, anchors = self.predict_from_features(features, tuple(images.tensor.shape[-2:]))
        instances = self._instances(outputs, 0, anchors, images, inputs)
        return {"instances": instances, "keyframe": keyframe}, state

    # training
    def forward(self, batched_inputs: List[Dict]):
        if not self.training:
            return super().forward(batched_inputs)
        if self.training_stage == "flow":
            return self.flow_losses(batched_inputs)
        return self.video_losses(batched_inputs)

    def _images(self, inputs: List[Dict]) -> ImageList:
        return ImageList.from_tensors([self.resize_and_normalize(x["image"]) for x in inputs])

    def flow_losses(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        """``loss_flow``: the end-point error of FlowNetMini on the images moved by a random
        affine motion (the images are the keyframes)."""
        keyframes = self._images(batched_inputs).tensor
        current, flow = affine_pairs(keyframes, *self.flow_motion)
        with torch.no_grad():
            laterals = [self.current_lateral(x) for x in (current, keyframes)]
        predictions = self.flow_net(*laterals, finest=True)
        target = pixels_to_reference_units(flow)
        return {"loss_flow": end_point_error([p.flow for p in predictions], target)}

    def video_losses(self, batched_inputs: List[Dict]) -> Dict[str, torch.Tensor]:
        """YOLACT's losses on the annotated (last) frame of each pair computed whole and warped
        from the first, and ``loss_feature_matching``."""
        for x in batched_inputs:
            if len(x.get("frames", ())) < 2:
                raise ValueError("YolactEdge's video training takes pairs of frames (INPUT."
                                 "DATASET_MAPPER 'YOLACTClipMapper', INPUT.VIDEO.SAMPLING_FRAME_"
                                 f"NUM 2); got an input with keys {sorted(x)}")
        keyframes = self._images([x["frames"][0] for x in batched_inputs])
        annotated = [x["frames"][-1] for x in batched_inputs]
        images = self._images(annotated)
        with torch.no_grad():
            _, kept = self.keyframe_features(keyframes.tensor)
        features, computed = self.keyframe_features(images.tensor)
        outputs, anchors = self.predict_from_features(features, tuple(images.tensor.shape[-2:]))
        losses = self.losses(outputs, anchors, annotated, images)
        sums = self.warped_sums(self.current_lateral(images.tensor), kept)
        outputs, anchors = self.predict_from_features(self.backbone.output_levels(sums),
                                                      tuple(images.tensor.shape[-2:]))
        warp = self.losses(outputs, anchors, annotated, images)
        losses.update({k.replace("loss_", "loss_warp_"): v for k, v in warp.items()})
        losses["loss_feature_matching"] = self.feature_matching_weight * \
            self.feature_matching_loss(sums[1:], [s.detach() for s in computed.sums[-2:]])
        return losses

    def feature_matching_loss(self, warped: List[torch.Tensor], computed: List[torch.Tensor]
                              ) -> torch.Tensor:
        """Mean over P4, P5 and (sums, ReLU(output conv of the sums)) of mean(1 - cosine over
        channels) between the warped and the computed features."""
        convs = self.backbone.output_convs[len(self.backbone.output_convs) - len(warped):]
        terms = []
        for conv, w, c in zip(convs, warped, computed):
            weight, bias = conv.weight.detach(), conv.bias.detach()
            after = [F.relu(F.conv2d(t, weight, bias, padding=conv.padding)) for t in (w, c)]
            for a, b in ((w, c), after):
                terms.append((1 - F.cosine_similarity(a, b, dim=1)).mean())
        return torch.stack(terms).mean()
