"""CenterMask's spatial attention-guided mask head, SAG-Mask (Sec. 2.4, Fig. 2):

    RoIAlign 14x14 -> four 3x3 conv -> SAM -> 2x deconv (28x28) -> class-specific 1x1 predictor

with the spatial attention module (Eq. 3-4)

    A_sag(X) = sigmoid(conv3x3([AvgPool_c(X), MaxPool_c(X)]))     X_sag = A_sag(X) o X

where the poolings run along the channel axis. The loss is Mask R-CNN's per-pixel binary
cross-entropy (Detectron2's ``mask_rcnn_loss``). Parameter names are centermask2's.
"""
import fvcore.nn.weight_init as weight_init
import torch
from torch import nn

from detectron2.layers import Conv2d
from detectron2.modeling.roi_heads import ROI_MASK_HEAD_REGISTRY, MaskRCNNConvUpsampleHead

__all__ = ["SpatialAttention", "SpatialAttentionMaskHead"]


class SpatialAttention(nn.Module):
    """SAM (Eq. 3-4): re-weights every position of the input by one sigmoid attention value."""

    def __init__(self, kernel_size: int = 3):
        super().__init__()
        self.conv = Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        weight_init.c2_msra_fill(self.conv)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """A_sag (N, 1, H, W) of x (N, C, H, W)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return self.conv(pooled).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


@ROI_MASK_HEAD_REGISTRY.register()
class SpatialAttentionMaskHead(MaskRCNNConvUpsampleHead):
    """Detectron2's Mask R-CNN head (``MODEL.ROI_MASK_HEAD.NUM_CONV`` x ``CONV_DIM`` convs,
    deconv, predictor) with the SAM between the last conv and the deconvolution."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the head is an nn.Sequential run in registration order: insert the SAM before the
        # upsampling layers
        tail = {name: self._modules.pop(name) for name in ("deconv", "deconv_relu", "predictor")}
        self.spatialAtt = SpatialAttention()
        for name, module in tail.items():
            self.add_module(name, module)
