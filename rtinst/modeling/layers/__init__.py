"""Building blocks shared by the methods: conv-norm-activation, separable and deformable
convolutions, a convolution evaluated at chosen locations, Winograd 3 x 3 convolutions for CPU
inference (``winograd_conv``, used by ``optimize_for_inference``), head initialisation, YOLACT's
ProtoNet and the prototype mask assembly; for query-based heads, DETR's transformer parts
(``transformer``); for video, warping features by optical flow (``flow_warp``)."""
from .conv_at_locations import check_size_keeping, conv2d_at_locations
from .conv_norm_act import ConvNormAct
from .deform_conv import DeformConv3x3
from .flow_warp import warp
from .head_init import HEAD_INIT_STD, normal_init, prior_probability_bias
from .protonet import ProtoNet, upsample_to
from .prototype_masks import assemble_masks, crop_to_boxes, grid_masks_to_image
from .separable_conv import SeparableConv2d
from .transformer import (
    LearnableQueries,
    PositionEmbeddingSine,
    TransformerDecoder,
    TransformerDecoderLayer,
)

__all__ = [
    "HEAD_INIT_STD",
    "ConvNormAct",
    "DeformConv3x3",
    "LearnableQueries",
    "PositionEmbeddingSine",
    "ProtoNet",
    "SeparableConv2d",
    "TransformerDecoder",
    "TransformerDecoderLayer",
    "assemble_masks",
    "check_size_keeping",
    "conv2d_at_locations",
    "crop_to_boxes",
    "grid_masks_to_image",
    "normal_init",
    "prior_probability_bias",
    "upsample_to",
    "warp",
]
