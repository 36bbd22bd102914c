"""Transformer parts of query-based heads (DETR, Carion et al., ECCV 2020; Mask2Former, Cheng et
al., CVPR 2022), batch first:

* ``PositionEmbeddingSine``: DETR's 2-D sine position embedding of a feature map;
* ``TransformerDecoderLayer``: queries attend to the flattened features (cross-attention), to
  each other (self-attention), then a feed-forward network; each with a residual and LayerNorm
  after it (post-norm, DETR) or before it (pre-norm); ``TransformerDecoder`` stacks them;
* ``LearnableQueries``: N learned query features, and optionally their learned positions.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PositionEmbeddingSine", "TransformerDecoderLayer", "TransformerDecoder",
           "LearnableQueries"]


class PositionEmbeddingSine(nn.Module):
    """DETR's sine embedding: for a pixel at row y, column x (1-based, counting only unpadded
    pixels), ``num_pos_feats`` channels of y then of x, channel pair (2i, 2i+1) being
    (sin, cos)(pos / temperature^(2i / num_pos_feats)). With ``normalize``, y and x are first
    divided by the height / width (+1e-6) and multiplied by ``scale`` (2 pi)."""

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0,
                 normalize: bool = False, scale: float = 2 * math.pi):
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"PositionEmbeddingSine: num_pos_feats must be even, got "
                             f"{num_pos_feats}")
        self.normalize, self.scale = normalize, scale
        exponents = 2 * (torch.arange(num_pos_feats) // 2) / num_pos_feats
        self.register_buffer("dim_t", temperature ** exponents.float(), persistent=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
        """(B, 2 num_pos_feats, H, W) embedding of the (B, C, H, W) map ``x``, whose pixels are
        padding where the (B, H, W) boolean ``mask`` is True (None: no padding)."""
        if mask is None:
            not_mask = torch.ones_like(x[:, 0], dtype=torch.float32)
        else:
            if mask.shape != (x.shape[0],) + x.shape[2:]:
                raise ValueError(f"PositionEmbeddingSine: mask {tuple(mask.shape)} does not match "
                                 f"the features {tuple(x.shape)}")
            not_mask = (~mask).float()
        y_embed, x_embed = not_mask.cumsum(1), not_mask.cumsum(2)
        if self.normalize:
            y_embed = y_embed / (y_embed[:, -1:, :] + 1e-6) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + 1e-6) * self.scale
        pos_x, pos_y = x_embed[..., None] / self.dim_t, y_embed[..., None] / self.dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(x.dtype)


def _with_pos(x, pos):
    return x if pos is None else x + pos


class TransformerDecoderLayer(nn.Module):
    """Cross-attention of the queries to the features, self-attention among the queries, FFN
    (the order of Mask2Former), with dropout, residuals and post- or pre-LayerNorm. Positions
    are added to the queries and keys of attention, not to its values."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.0, activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        if activation not in ("relu", "gelu"):
            raise ValueError(f"TransformerDecoderLayer: activation must be 'relu' or 'gelu', got "
                             f"{activation!r}")
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.activation = F.relu if activation == "relu" else F.gelu
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in range(3))
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before

    def _residual(self, x, norm, block):
        """x + block(norm(x)) in pre-norm, norm(x + block(x)) in post-norm."""
        if self.normalize_before:
            return x + self.dropout(block(norm(x)))
        return norm(x + self.dropout(block(x)))

    def forward(self, queries, memory, query_pos=None, memory_pos=None,
                memory_key_padding_mask=None):
        """(B, Q, D) updated ``queries`` (B, Q, D) given the flattened features ``memory``
        (B, HW, D), their positions ``query_pos`` / ``memory_pos`` (same shapes, or None) and the
        (B, HW) boolean ``memory_key_padding_mask`` (True: a padded pixel not attended to)."""
        x = self._residual(queries, self.norms[0], lambda q: self.cross_attn(
            _with_pos(q, query_pos), _with_pos(memory, memory_pos), memory,
            key_padding_mask=memory_key_padding_mask, need_weights=False)[0])
        x = self._residual(x, self.norms[1], lambda q: self.self_attn(
            _with_pos(q, query_pos), _with_pos(q, query_pos), q, need_weights=False)[0])
        return self._residual(x, self.norms[2], lambda q: self.linear2(
            self.dropout(self.activation(self.linear1(q)))))


class TransformerDecoder(nn.Module):
    """``num_layers`` ``TransformerDecoderLayer``s (keyword arguments ``layer_args``) in sequence;
    with pre-norm, a last LayerNorm on what they return (as DETR)."""

    def __init__(self, num_layers: int, **layer_args):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"TransformerDecoder needs at least one layer, got {num_layers}")
        self.layers = nn.ModuleList(TransformerDecoderLayer(**layer_args)
                                    for _ in range(num_layers))
        d_model = self.layers[0].linear2.out_features
        self.norm = nn.LayerNorm(d_model) if layer_args.get("normalize_before") else nn.Identity()

    def forward(self, queries, memory, query_pos=None, memory_pos=None,
                memory_key_padding_mask=None):
        """The (B, Q, D) queries after each layer, a list (deep supervision uses them all), for
        the arguments of ``TransformerDecoderLayer.forward``."""
        outputs = []
        for layer in self.layers:
            queries = layer(queries, memory, query_pos, memory_pos, memory_key_padding_mask)
            outputs.append(self.norm(queries))
        return outputs


class LearnableQueries(nn.Module):
    """``num_queries`` learned query features of ``dim`` channels (``nn.Embedding``) and, with
    ``with_pos``, learned query positions (DETR's object queries)."""

    def __init__(self, num_queries: int, dim: int, with_pos: bool = True):
        super().__init__()
        self.features = nn.Embedding(num_queries, dim)
        self.pos = nn.Embedding(num_queries, dim) if with_pos else None

    def forward(self, reference: torch.Tensor):
        """(queries, positions or None), each (B, num_queries, dim), B being the first dimension
        of ``reference`` (e.g. the image features)."""
        batch = reference.shape[0]
        queries = self.features.weight[None].expand(batch, -1, -1)
        if self.pos is None:
            return queries, None
        return queries, self.pos.weight[None].expand(batch, -1, -1)
