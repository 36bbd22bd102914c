"""MobileInst (Zhang et al., AAAI 2024) as a Detectron2 meta-architecture (Fig. 3):

    backbone -> X3, X4, X5 (local), X6 (global, stride 64)
    mask decoder (mask_decoder.py):          X3-X6 -> X_mask (stride 8)
    instance decoder (instance_decoder.py):  queries, X6, pool(X_mask) -> classes, objectness, K
    masks: M = K . X_mask;  training: criterion.py;  inference: inference.py (NMS-free)

and a video model (``rtinst.video.loop``): the keyframe's kernels segment the next T - 1 frames,
on which only the backbone and the mask decoder run (kernel reuse, Sec. 3.4, Eq. 1);
identities across keyframes come from kernel_association.py; temporal training by query
passing (Sec. 3.5) is query_passing.py.
"""
from typing import Dict, List, NamedTuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import Boxes, ImageList, Instances
from rtinst.modeling.meta_arch import normalised_batch

from .criterion import MobileInstCriterion
from .inference import Selection, instances_from_kernels, kept, select_queries
from .instance_decoder import InstanceDecoder
from .mask_decoder import build_mask_decoder, instance_masks
from .query_passing import frames_of_batch

__all__ = ["FrameMaps", "MobileInst", "KernelReuseState"]


class FrameMaps(NamedTuple):
    """The network's outputs for a batch: per query ``logits`` (B, N, classes), ``objectness``
    (B, N, 1) and ``kernels`` (B, N, D); ``mask_features`` X_mask (B, D, H / 8, W / 8)."""

    logits: torch.Tensor
    objectness: torch.Tensor
    kernels: torch.Tensor
    mask_features: torch.Tensor


class KernelReuseState(NamedTuple):
    """What a keyframe leaves to the frames that reuse its kernels: its selected queries and
    the frames run since it (0 on the keyframe)."""

    selection: Selection
    since_keyframe: int


@META_ARCH_REGISTRY.register()
class MobileInst(nn.Module):
    """Outputs per image ``{"instances": Instances}`` with ``pred_boxes`` (the masks' boxes),
    ``scores``, ``pred_classes``, ``pred_masks`` at the image's resolution and ``pred_kernels``
    (each instance's mask kernel, which kernel association compares)."""

    @configurable
    def __init__(self, *, backbone, mask_decoder: nn.Module, instance_decoder: InstanceDecoder,
                 criterion: MobileInstCriterion, in_features, global_feature: str, pixel_mean,
                 pixel_std, topk: int, score_thresh: float, mask_threshold: float,
                 kernel_reuse_frames: int = 1, query_passing: bool = False):
        super().__init__()
        self.backbone = backbone
        self.mask_decoder = mask_decoder
        self.instance_decoder = instance_decoder
        self.criterion = criterion
        self.in_features, self.global_feature = list(in_features), global_feature
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        if not 0.0 < mask_threshold < 1.0:
            raise ValueError("MODEL.MOBILEINST.TEST.MASK_THRESHOLD must be in (0, 1), got "
                             f"{mask_threshold}")
        if topk < 1:
            raise ValueError(f"MODEL.MOBILEINST.TEST.TOPK must be at least 1, got {topk}")
        self.topk, self.score_thresh, self.mask_threshold = topk, score_thresh, mask_threshold
        if kernel_reuse_frames < 1:
            raise ValueError("MODEL.MOBILEINST.VIDEO.KERNEL_REUSE_FRAMES must be at least 1 (1: "
                             f"every frame is a keyframe), got {kernel_reuse_frames}")
        self.kernel_reuse_frames = kernel_reuse_frames
        if query_passing and tuple(instance_decoder.stages) != ("global", "local"):
            raise ValueError("MODEL.MOBILEINST.VIDEO.QUERY_PASSING needs the global-local "
                             "instance decoder (MODEL.MOBILEINST.INSTANCE_DECODER.KIND "
                             f"'global_local'), got the stages {list(instance_decoder.stages)}")
        self.query_passing = query_passing
        self.mask_stride = backbone.output_shape()[in_features[0]].stride

    @classmethod
    def from_config(cls, cfg):
        mcfg = cfg.MODEL.MOBILEINST
        backbone = build_backbone(cfg)
        shapes = backbone.output_shape()
        for name in [*mcfg.IN_FEATURES, mcfg.GLOBAL_FEATURE]:
            if name not in shapes:
                raise ValueError(f"MODEL.MOBILEINST.IN_FEATURES / GLOBAL_FEATURE: {name!r} is not "
                                 f"a backbone output ({sorted(shapes)})")
        global_channels = shapes[mcfg.GLOBAL_FEATURE].channels
        kernel_dim = mcfg.INSTANCE_DECODER.KERNEL_DIM
        dcfg, mdcfg = mcfg.INSTANCE_DECODER, mcfg.MASK_DECODER
        return {
            "backbone": backbone,
            "mask_decoder": build_mask_decoder(
                mdcfg.KIND, [shapes[f].channels for f in mcfg.IN_FEATURES], global_channels,
                mdcfg.CHANNELS, kernel_dim, mdcfg.NUM_CONVS, mdcfg.NORM),
            "instance_decoder": InstanceDecoder(
                global_channels=global_channels, kernel_dim=kernel_dim,
                num_classes=mcfg.NUM_CLASSES, num_queries=dcfg.NUM_QUERIES,
                hidden_dim=dcfg.HIDDEN_DIM, num_heads=dcfg.NUM_HEADS,
                dim_feedforward=dcfg.DIM_FEEDFORWARD, dropout=dcfg.DROPOUT, kind=dcfg.KIND,
                pool_type=dcfg.POOL_TYPE, pool_size=dcfg.POOL_SIZE, prior_prob=mcfg.PRIOR_PROB),
            "criterion": MobileInstCriterion(
                num_classes=mcfg.NUM_CLASSES, matcher_alpha=mcfg.MATCHER_ALPHA,
                matcher_beta=mcfg.MATCHER_BETA, focal_alpha=mcfg.FOCAL_ALPHA,
                focal_gamma=mcfg.FOCAL_GAMMA, mask_stride=shapes[mcfg.IN_FEATURES[0]].stride,
                weights={"loss_cls": mcfg.CLASS_LOSS_WEIGHT,
                         "loss_mask_dice": mcfg.MASK_DICE_LOSS_WEIGHT,
                         "loss_mask_bce": mcfg.MASK_BCE_LOSS_WEIGHT,
                         "loss_objectness": mcfg.OBJECTNESS_LOSS_WEIGHT}),
            "in_features": mcfg.IN_FEATURES,
            "global_feature": mcfg.GLOBAL_FEATURE,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "topk": mcfg.TEST.TOPK,
            "score_thresh": mcfg.TEST.SCORE_THRESH,
            "mask_threshold": mcfg.TEST.MASK_THRESHOLD,
            "kernel_reuse_frames": mcfg.VIDEO.KERNEL_REUSE_FRAMES,
            "query_passing": mcfg.VIDEO.QUERY_PASSING,
        }

    @property
    def device(self):
        return self.pixel_mean.device

    def preprocess_image(self, batched_inputs: List[Dict]) -> ImageList:
        return normalised_batch(batched_inputs, self.pixel_mean, self.pixel_std,
                                self.backbone.size_divisibility)

    def encode(self, images: torch.Tensor):
        """The backbone and the mask decoder (what every frame runs): (X6, X_mask)."""
        features = self.backbone(images)
        global_features = features[self.global_feature]
        local = [features[f] for f in self.in_features]
        return global_features, self.mask_decoder(local, global_features)

    def predict_maps(self, images: torch.Tensor) -> FrameMaps:
        """The whole network on a normalised (B, 3, H, W) batch."""
        global_features, mask_features = self.encode(images)
        predictions = self.instance_decoder(global_features, mask_features)
        return FrameMaps(predictions.logits, predictions.objectness, predictions.kernels,
                         mask_features)

    def select(self, maps: FrameMaps) -> Selection:
        """One image's top-k queries (``inference.select_queries``) from its maps."""
        return select_queries(maps.logits, maps.objectness, maps.kernels, self.topk)

    def instances_tensors(self, selection: Selection, mask_features, input_size, output_size,
                          valid_size=None):
        """(boxes, scores, classes, bool masks) of the selected queries above the score
        threshold, their masks from ``mask_features`` (D, h, w) of one image
        (``inference.instances_from_kernels``)."""
        return instances_from_kernels(selection, mask_features, self.score_thresh,
                                      self.mask_threshold, self.mask_stride, input_size,
                                      output_size, valid_size)

    def inference_tensors(self, maps: FrameMaps, input_size, output_size, valid_size=None):
        """One image's (N, 4) boxes, (N,) scores, (N,) classes and (N, h, w) bool masks in the
        ``output_size`` frame, the image filling ``input_size`` of the padded input; masks
        only inside ``valid_size`` (h, w), the picture of a letterboxed export, if given."""
        return self.instances_tensors(self.select(maps), maps.mask_features, input_size,
                                      output_size, valid_size)

    def forward(self, batched_inputs: List[Dict]):
        if self.training:
            return self.losses(batched_inputs)
        images = self.preprocess_image(batched_inputs)
        maps = self.predict_maps(images.tensor)
        return [self._outputs(self.select(FrameMaps(*(m[i] for m in maps))),
                              maps.mask_features[i], inputs, image_size)
                for i, (inputs, image_size) in enumerate(zip(batched_inputs, images.image_sizes))]

    def _outputs(self, selection: Selection, mask_features, inputs, image_size):
        output_size = (inputs.get("height", image_size[0]), inputs.get("width", image_size[1]))
        boxes, scores, classes, masks = self.instances_tensors(selection, mask_features,
                                                               image_size, output_size)
        instances = Instances(output_size)
        instances.pred_boxes = Boxes(boxes)
        instances.scores = scores
        instances.pred_classes = classes
        instances.pred_masks = masks
        instances.pred_kernels = selection.kernels[kept(selection, self.score_thresh)]
        return {"instances": instances}

    def losses(self, batched_inputs: List[Dict]):
        """Eq. 2 on images, or on clips' frames with query passing (Sec. 3.5)."""
        frames, pairs = frames_of_batch(batched_inputs, self.query_passing)
        images = self.preprocess_image(frames)
        gt_instances = [x["instances"].to(self.device) for x in frames]
        global_features, mask_features = self.encode(images.tensor)
        predictions = self.instance_decoder(global_features, mask_features)
        logits, objectness, kernels = predictions.logits, predictions.objectness, \
            predictions.kernels
        if pairs:
            earlier, later = [p[0] for p in pairs], [p[1] for p in pairs]
            passed = self.instance_decoder(global_features[later], mask_features[later],
                                           passed_queries=predictions.global_queries[earlier])
            logits = torch.cat([logits, passed.logits])
            objectness = torch.cat([objectness, passed.objectness])
            kernels = torch.cat([kernels, passed.kernels])
            mask_features = torch.cat([mask_features, mask_features[later]])
            gt_instances = gt_instances + [gt_instances[i] for i in later]
        masks = instance_masks(kernels, mask_features)
        return self.criterion(logits, objectness, masks, gt_instances)

    # the video contract (rtinst.video.loop): kernel reuse, Sec. 3.4
    def video_state(self):
        return None

    def forward_frame(self, inputs: Dict, state):
        """One frame: a keyframe (the whole network, its top-k queries kept) when ``state`` is
        None or T frames have run since the last; otherwise the backbone and mask decoder only,
        the keyframe's kernels, scores and classes reused (Eq. 1)."""
        images = self.preprocess_image([inputs])
        keyframe = state is None or state.since_keyframe + 1 >= self.kernel_reuse_frames
        if keyframe:
            maps = self.predict_maps(images.tensor)
            selection = self.select(FrameMaps(*(m[0] for m in maps)))
            state = KernelReuseState(selection, 0)
            mask_features = maps.mask_features[0]
        else:
            mask_features = self.encode(images.tensor)[1][0]
            state = KernelReuseState(state.selection, state.since_keyframe + 1)
        outputs = self._outputs(state.selection, mask_features, inputs, images.image_sizes[0])
        return {**outputs, "keyframe": keyframe}, state
