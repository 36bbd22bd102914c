"""The initialisation of prediction layers shared by the dense heads (RetinaNet, Lin et al. 2017,
Sec. 4.1, as FCOS Sec. 3.1 uses it): Gaussian weights with sigma 0.01, and a classifier bias that
makes every location start at the foreground probability pi."""
import math

from torch import nn

__all__ = ["normal_init", "prior_probability_bias"]

HEAD_INIT_STD = 0.01


def normal_init(layer: nn.Module, std: float = HEAD_INIT_STD, bias: float = 0.0) -> nn.Module:
    """Gaussian weights with standard deviation ``std`` and a constant ``bias``; returns
    ``layer``."""
    nn.init.normal_(layer.weight, std=std)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)
    return layer


def prior_probability_bias(prior_prob: float) -> float:
    """The bias b with sigmoid(b) = ``prior_prob``: -log((1 - pi) / pi)."""
    return -math.log((1 - prior_prob) / prior_prob)
