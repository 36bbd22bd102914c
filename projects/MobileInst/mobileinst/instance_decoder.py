"""The dual transformer instance decoder (MobileInst Sec. 3.2, Fig. 3): N learnable object
queries are updated by a *global* decoder layer, attending to the global features X_G = X6
(stride 64), then by a *local* decoder layer, attending to the local features X_L =
pool(X_mask), the mask features max-pooled by 8 x 8 (stride 64); each layer is cross-attention,
self-attention, FFN, with sine position embeddings on the features (Mask2Former's). From the
last queries: class logits, the IoU-aware objectness logit and the mask kernel K (M = K . X_mask).

Table 3's alternatives (``KIND``): global-local (the paper's), local-local, global only, local
only; Table 5's (``POOL_TYPE`` / ``POOL_SIZE``): max, average or no pooling of X_mask.

Temporal training (``query_passing.py``) hands the local decoder another frame's global-decoder
queries (``passed_queries``).
"""
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rtinst.modeling.layers import (LearnableQueries, PositionEmbeddingSine,
                                    TransformerDecoderLayer, prior_probability_bias)

from .config import DECODER_KINDS, POOL_TYPES

__all__ = ["InstanceDecoder", "InstancePredictions", "pool_local_features"]


class InstancePredictions(NamedTuple):
    """Per query: ``logits`` (B, N, classes), ``objectness`` (B, N, 1) logits, ``kernels``
    (B, N, kernel dim); ``global_queries`` (B, N, D): the queries after the global decoder (None
    without one), which query passing hands to another frame."""

    logits: torch.Tensor
    objectness: torch.Tensor
    kernels: torch.Tensor
    global_queries: Optional[torch.Tensor]


def pool_local_features(mask_features: torch.Tensor, pool_type: str, pool_size: int):
    """X_L = f_pool(X_mask) (Sec. 3.2): ``pool_size`` x ``pool_size`` max or average pooling
    (ceil mode: a border smaller than the window is pooled too), or the map itself ("none")."""
    if pool_type == "none" or pool_size == 1:
        return mask_features
    if pool_type == "max":
        return F.max_pool2d(mask_features, pool_size, ceil_mode=True)
    return F.avg_pool2d(mask_features, pool_size, ceil_mode=True, count_include_pad=False)


class InstanceDecoder(nn.Module):
    """Queries -> (class logits, objectness, kernels) given X6 and the mask features."""

    def __init__(self, *, global_channels: int, kernel_dim: int, num_classes: int,
                 num_queries: int = 100, hidden_dim: int = 256, num_heads: int = 8,
                 dim_feedforward: int = 1024, dropout: float = 0.0,
                 kind: str = "global_local", pool_type: str = "max", pool_size: int = 8,
                 prior_prob: float = 0.01):
        super().__init__()
        if kind not in DECODER_KINDS:
            raise ValueError(f"MODEL.MOBILEINST.INSTANCE_DECODER.KIND must be one of "
                             f"{sorted(DECODER_KINDS)}, got {kind!r}")
        if pool_type not in POOL_TYPES:
            raise ValueError(f"MODEL.MOBILEINST.INSTANCE_DECODER.POOL_TYPE must be one of "
                             f"{list(POOL_TYPES)}, got {pool_type!r}")
        self.stages: Sequence[str] = DECODER_KINDS[kind]
        self.pool_type, self.pool_size = pool_type, pool_size
        self.queries = LearnableQueries(num_queries, hidden_dim, with_pos=True)
        self.position = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.global_proj = nn.Conv2d(global_channels, hidden_dim, 1) \
            if "global" in self.stages else None
        self.local_proj = nn.Conv2d(kernel_dim, hidden_dim, 1) if "local" in self.stages else None
        self.layers = nn.ModuleList(
            TransformerDecoderLayer(hidden_dim, num_heads, dim_feedforward, dropout)
            for _ in self.stages)
        self.class_head = nn.Linear(hidden_dim, num_classes)
        self.objectness_head = nn.Linear(hidden_dim, 1)
        self.kernel_head = nn.Linear(hidden_dim, kernel_dim)
        nn.init.constant_(self.class_head.bias, prior_probability_bias(prior_prob))

    def memory(self, stage: str, global_features, mask_features):
        """The flattened (B, HW, D) keys / values of a ``stage`` and their positions."""
        if stage == "global":
            x = self.global_proj(global_features)
        else:
            x = self.local_proj(pool_local_features(mask_features, self.pool_type,
                                                    self.pool_size))
        return x.flatten(2).transpose(1, 2), self.position(x).flatten(2).transpose(1, 2)

    def forward(self, global_features: torch.Tensor, mask_features: torch.Tensor,
                passed_queries: Optional[torch.Tensor] = None) -> InstancePredictions:
        """``global_features`` X6 (B, C6, h, w); ``mask_features`` X_mask (B, kernel dim, H, W);
        ``passed_queries`` (B, N, D): another frame's global-decoder queries, which replace this
        frame's as the input of the second (local) decoder (Sec. 3.5; the model checks that the
        decoder is global-local)."""
        queries, query_pos = self.queries(mask_features)
        global_queries = None
        for index, (stage, layer) in enumerate(zip(self.stages, self.layers)):
            if index == 1 and passed_queries is not None:
                queries = passed_queries
            memory, memory_pos = self.memory(stage, global_features, mask_features)
            queries = layer(queries, memory, query_pos, memory_pos)
            if stage == "global" and index == 0:
                global_queries = queries
        return InstancePredictions(self.class_head(queries), self.objectness_head(queries),
                                   self.kernel_head(queries), global_queries)
