"""TopFormer (Zhang et al., "TopFormer: Token Pyramid Transformer for Mobile Semantic
Segmentation", CVPR 2022) as a Detectron2 backbone, MobileInst's mobile transformer (Sec. 3.1).

The parts follow the paper's Sec. 3: a token pyramid of MobileNetV2 blocks, its tokens
average-pooled to stride 64 and concatenated (Sec. 3.1), a few attention blocks extracting
scale-aware semantics from them (Sec. 3.2), and the semantics injected into the local tokens at
strides 8, 16 and 32 (Sec. 3.3). The variants' block tables, heads and widths are those of the
reference implementation's configs (hustvl/TopFormer, Apache-2.0). Outputs: "x3", "x4", "x5"
(the injected local tokens, strides 8-32) and "x6" (the global tokens, stride 64).

Two details differ from the reference code: the attention logits are scaled by
1 / sqrt(key dim), which the code leaves out (``topformer_conversion`` folds the scale into the
converted query normalisation, so the attention is the same), and the injection gate is the
sigmoid the paper names where the code has a hard sigmoid, ReLU6(x + 3) / 6.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import StochasticDepth

from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY
from detectron2.modeling.backbone import Backbone
from rtinst.modeling.backbone.pretrained import NORMS, group_norm, warn_frozen_norm_from_scratch
from rtinst.modeling.layers import ConvNormAct

__all__ = [
    "TOPFORMER_VARIANTS",
    "ConvMlp",
    "InvertedResidual",
    "MultiHeadConvAttention",
    "PyramidPoolAggregation",
    "SemanticInjection",
    "TokenPyramidModule",
    "TopFormer",
    "TopFormerAttentionBlock",
    "TopFormerVariant",
    "build_topformer_backbone",
    "he_fan_out_init",
    "resolve_norm",
]

KEY_DIM = 16  # per-head query / key channels (Sec. 3.2, following LeViT)
ATTN_RATIO = 2  # per-head value channels = ATTN_RATIO * KEY_DIM
MLP_RATIO = 2  # hidden channels of the feed-forward network = MLP_RATIO * dim
DEPTH = 4  # attention blocks of every variant
STEM_CHANNELS = 16
GLOBAL_STRIDE = 64  # of the pooled tokens: the stride-32 token halved
LOCAL_FEATURES = ("x3", "x4", "x5")  # the injected tokens 1-3 (strides 8, 16, 32)


@dataclass(frozen=True)
class TopFormerVariant:
    """One TopFormer size: the token pyramid's inverted-residual blocks as (kernel, expansion,
    channels, stride), the blocks whose outputs are the 4 tokens (strides 4, 8, 16, 32), the
    attention heads and the channels of the injected outputs."""
    blocks: Tuple[Tuple[int, int, int, int], ...]
    token_blocks: Tuple[int, int, int, int]
    num_heads: int
    out_channels: int


def _blocks(widths: Sequence[int]) -> Tuple[Tuple[int, int, int, int], ...]:
    """The reference's block table (kernel, expansion, stride per row) with the given widths."""
    rows = ((3, 1, 1), (3, 4, 2), (3, 3, 1), (5, 3, 2), (5, 3, 1), (3, 3, 2), (3, 3, 1),
            (5, 6, 2), (5, 6, 1), (3, 6, 1))
    return tuple((k, t, c, s) for (k, t, s), c in zip(rows, widths))


TOPFORMER_VARIANTS = {
    "T": TopFormerVariant(_blocks((16, 16, 16, 32, 32, 64, 64, 96, 96)), (2, 4, 6, 8), 4, 128),
    "S": TopFormerVariant(_blocks((16, 24, 24, 48, 48, 96, 96, 128, 128, 128)), (2, 4, 6, 9), 6,
                          192),
    "B": TopFormerVariant(_blocks((16, 32, 32, 64, 64, 128, 128, 160, 160, 160)), (2, 4, 6, 9),
                          8, 256),
}


def resolve_norm(norm: str, config_key: str):
    """``norm`` for ``ConvNormAct``: one of NORMS, "GN" with a group count dividing the narrow
    widths (16, 24, ...); a ValueError naming ``config_key`` otherwise."""
    if norm not in NORMS:
        raise ValueError(f"{config_key} must be one of {', '.join(NORMS)}, got {norm!r}")
    return group_norm if norm == "GN" else norm


def he_fan_out_init(conv: nn.Conv2d) -> None:
    """Normal weights with std sqrt(2 / fan-out), the fan-out counted per group (so depthwise
    convolutions are not shrunk), zero bias: TopFormer's initialisation for training."""
    fan_out = conv.kernel_size[0] * conv.kernel_size[1] * conv.out_channels // conv.groups
    nn.init.normal_(conv.weight, 0.0, math.sqrt(2.0 / fan_out))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _conv(in_channels, out_channels, kernel_size=1, *, norm, activation=None, stride=1,
          groups=1) -> ConvNormAct:
    return ConvNormAct(in_channels, out_channels, kernel_size, stride, groups, norm=norm,
                       activation=activation, init=he_fan_out_init)


class InvertedResidual(nn.Module):
    """MobileNetV2's block (Sandler et al., CVPR 2018), the token pyramid's unit (TopFormer
    Sec. 3.1): 1x1 expansion (none when ``expansion`` is 1), k x k depthwise, linear 1x1
    projection, with a residual when the shape is kept; ReLU activations."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, expansion: int,
                 stride: int, norm="BN"):
        super().__init__()
        hidden = int(round(in_channels * expansion))
        relu = nn.ReLU
        self.expand = (_conv(in_channels, hidden, norm=norm, activation=relu)
                       if expansion != 1 else None)
        self.depthwise = _conv(hidden, hidden, kernel_size, stride=stride, groups=hidden,
                               norm=norm, activation=relu)
        self.project = _conv(hidden, out_channels, norm=norm)
        self.residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels

    def forward(self, x):
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class TokenPyramidModule(nn.Module):
    """TopFormer Sec. 3.1: a stride-2 3x3 stem conv and a stack of inverted residual blocks;
    returns the outputs of ``token_blocks`` (the token pyramid, strides 4, 8, 16, 32)."""

    def __init__(self, blocks: Sequence[Tuple[int, int, int, int]], token_blocks: Sequence[int],
                 norm="BN"):
        super().__init__()
        self.stem = _conv(3, STEM_CHANNELS, 3, stride=2, norm=norm, activation=nn.ReLU)
        layers, channels = [], STEM_CHANNELS
        for kernel, expansion, out_channels, stride in blocks:
            layers.append(InvertedResidual(channels, out_channels, kernel, expansion, stride, norm))
            channels = out_channels
        self.blocks = nn.Sequential(*layers)
        self.token_blocks = tuple(token_blocks)
        self.token_channels = [blocks[i][2] for i in self.token_blocks]

    def forward(self, x) -> List[torch.Tensor]:
        tokens = []
        x = self.stem(x)
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.token_blocks:
                tokens.append(x)
        return tokens


class PyramidPoolAggregation(nn.Module):
    """TopFormer Sec. 3.1: every token average-pooled to the size of the last (coarsest) one
    divided by ``stride`` (rounded up: stride 64 from the stride-32 token) and concatenated
    along the channels."""

    def __init__(self, stride: int = 2):
        super().__init__()
        self.stride = stride

    def forward(self, tokens: Sequence[torch.Tensor]) -> torch.Tensor:
        height, width = tokens[-1].shape[-2:]
        size = (-(-height // self.stride), -(-width // self.stride))
        return torch.cat([F.adaptive_avg_pool2d(t, size) for t in tokens], dim=1)


class MultiHeadConvAttention(nn.Module):
    """TopFormer Sec. 3.2's multi-head self-attention on a (B, C, H, W) map: queries and keys of
    ``key_dim`` channels per head, values of ``attn_ratio * key_dim``, each a 1x1 conv + norm;
    softmax(q k^T / sqrt(key_dim)) v, then ReLU6 and a 1x1 conv + norm back to ``dim``."""

    def __init__(self, dim: int, num_heads: int, key_dim: int = KEY_DIM,
                 attn_ratio: int = ATTN_RATIO, norm="BN"):
        super().__init__()
        self.num_heads, self.key_dim = num_heads, key_dim
        self.value_dim = attn_ratio * key_dim
        self.query = _conv(dim, num_heads * key_dim, norm=norm)
        self.key = _conv(dim, num_heads * key_dim, norm=norm)
        self.value = _conv(dim, num_heads * self.value_dim, norm=norm)
        self.proj = _conv(num_heads * self.value_dim, dim, norm=norm)

    def _heads(self, x, channels):
        """(B, heads * channels, H, W) -> (B, heads, H * W, channels)."""
        return x.reshape(x.shape[0], self.num_heads, channels, -1).transpose(-1, -2)

    def attention_weights(self, x) -> torch.Tensor:
        """(B, heads, H * W, H * W): softmax over the keys of q k^T / sqrt(key_dim)."""
        q = self._heads(self.query(x), self.key_dim)
        k = self._heads(self.key(x), self.key_dim)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.key_dim), dim=-1)

    def forward(self, x):
        v = self._heads(self.value(x), self.value_dim)
        out = (self.attention_weights(x) @ v).transpose(-1, -2)  # (B, heads, value_dim, H * W)
        return self.proj(F.relu6(out.reshape(x.shape[0], -1, *x.shape[-2:])))


class ConvMlp(nn.Module):
    """TopFormer Sec. 3.2's feed-forward network: 1x1 conv + norm to ``hidden`` channels, a 3x3
    depthwise conv (with bias) and ReLU6, 1x1 conv + norm back to ``dim``."""

    def __init__(self, dim: int, hidden: int, norm="BN"):
        super().__init__()
        self.fc1 = _conv(dim, hidden, norm=norm)
        self.dwconv = _conv(hidden, hidden, 3, groups=hidden, norm="", activation=nn.ReLU6)
        self.fc2 = _conv(hidden, dim, norm=norm)

    def forward(self, x):
        return self.fc2(self.dwconv(self.fc1(x)))


class TopFormerAttentionBlock(nn.Module):
    """TopFormer Sec. 3.2's transformer block on (B, dim, H, W) maps: x + attention(x), then
    x + mlp(x), each branch through stochastic depth (``drop_path``); no layer norm (the
    convolutions carry the normalisation)."""

    def __init__(self, dim: int, num_heads: int, key_dim: int = KEY_DIM,
                 attn_ratio: int = ATTN_RATIO, mlp_ratio: int = MLP_RATIO,
                 drop_path: float = 0.0, norm="BN"):
        """``norm``: a ``ConvNormAct`` norm (e.g. from ``resolve_norm``)."""
        super().__init__()
        self.attention = MultiHeadConvAttention(dim, num_heads, key_dim, attn_ratio, norm)
        self.mlp = ConvMlp(dim, mlp_ratio * dim, norm)
        self.drop_path = StochasticDepth(drop_path, mode="row")

    def forward(self, x):
        x = x + self.drop_path(self.attention(x))
        return x + self.drop_path(self.mlp(x))


class SemanticInjection(nn.Module):
    """TopFormer Sec. 3.3's semantics injection: with the local token L and its slice G of the
    global tokens, out = norm(conv(L)) * up(sigmoid(norm(conv(G)))) + up(norm(conv'(G))),
    ``up`` bilinear to L's size, every conv 1x1."""

    def __init__(self, in_channels: int, out_channels: int, norm="BN"):
        super().__init__()
        self.local_embedding = _conv(in_channels, out_channels, norm=norm)
        self.global_embedding = _conv(in_channels, out_channels, norm=norm)
        self.global_gate = _conv(in_channels, out_channels, norm=norm)

    def forward(self, local_tokens, global_tokens):
        size = local_tokens.shape[-2:]
        gate = F.interpolate(torch.sigmoid(self.global_gate(global_tokens)), size=size,
                             mode="bilinear", align_corners=False)
        semantics = F.interpolate(self.global_embedding(global_tokens), size=size,
                                  mode="bilinear", align_corners=False)
        return self.local_embedding(local_tokens) * gate + semantics


class TopFormer(Backbone):
    """TopFormer (Sec. 3): the token pyramid, its tokens pooled to stride 64 and concatenated,
    DEPTH attention blocks (stochastic depth rising linearly to ``drop_path``), and the global
    tokens' slices injected into the tokens at strides 8, 16 and 32. Returns
    {"x3", "x4", "x5": injected tokens (``out_channels``), "x6": global tokens}."""

    def __init__(self, variant: TopFormerVariant, drop_path: float = 0.1, norm="BN"):
        """``norm``: a ``ConvNormAct`` norm (e.g. from ``resolve_norm``)."""
        super().__init__()
        self.token_pyramid = TokenPyramidModule(variant.blocks, variant.token_blocks, norm)
        self.token_channels = self.token_pyramid.token_channels
        dim = sum(self.token_channels)
        self.pool = PyramidPoolAggregation(stride=2)
        self.transformer = nn.Sequential(*(
            TopFormerAttentionBlock(dim, variant.num_heads, drop_path=rate, norm=norm)
            for rate in torch.linspace(0, drop_path, DEPTH).tolist()
        ))
        self.injections = nn.ModuleDict({
            name: SemanticInjection(channels, variant.out_channels, norm)
            for name, channels in zip(LOCAL_FEATURES, self.token_channels[1:])
        })
        self._out_features = [*LOCAL_FEATURES, "x6"]
        self._out_feature_channels = {name: variant.out_channels for name in LOCAL_FEATURES}
        self._out_feature_channels["x6"] = dim
        self._out_feature_strides = {"x3": 8, "x4": 16, "x5": 32, "x6": GLOBAL_STRIDE}

    @property
    def size_divisibility(self) -> int:
        return GLOBAL_STRIDE

    def forward(self, x) -> Dict[str, torch.Tensor]:
        tokens = self.token_pyramid(x)
        global_tokens = self.transformer(self.pool(tokens))
        slices = global_tokens.split(self.token_channels, dim=1)
        outputs = {
            name: injection(local, semantics)
            for (name, injection), local, semantics in zip(
                self.injections.items(), tokens[1:], slices[1:])
        }
        outputs["x6"] = global_tokens
        return outputs


@BACKBONE_REGISTRY.register()
def build_topformer_backbone(cfg, input_shape: ShapeSpec) -> TopFormer:
    """TopFormer-T/S/B from ``MODEL.TOPFORMER.{ARCH, DROP_PATH, NORM}`` (3-channel input)."""
    if input_shape.channels != 3:
        raise ValueError(f"TopFormer takes 3-channel images, got {input_shape.channels} "
                         "input channels")
    tcfg = cfg.MODEL.TOPFORMER
    if tcfg.ARCH not in TOPFORMER_VARIANTS:
        raise ValueError(f"MODEL.TOPFORMER.ARCH must be one of "
                         f"{', '.join(TOPFORMER_VARIANTS)}, got {tcfg.ARCH!r}")
    if not 0.0 <= tcfg.DROP_PATH < 1.0:
        raise ValueError(f"MODEL.TOPFORMER.DROP_PATH must be in [0, 1), got {tcfg.DROP_PATH}")
    backbone = TopFormer(TOPFORMER_VARIANTS[tcfg.ARCH], tcfg.DROP_PATH,
                         resolve_norm(tcfg.NORM, "MODEL.TOPFORMER.NORM"))
    warn_frozen_norm_from_scratch(backbone, tcfg.NORM, "MODEL.TOPFORMER.NORM", cfg.MODEL.WEIGHTS)
    return backbone
