"""The optimizer's parameter groups: Detectron2's (normalisation-layer and bias settings), then
per parameter the embeddings' weight decay, the backbone's LR multiplier and the multipliers of
the ``SOLVER.PARAM_GROUPS`` pattern its name matches."""
import re
from typing import NamedTuple

from detectron2.solver.build import get_default_optimizer_params, reduce_param_groups
from torch import nn

from rtinst.errors import ConfigError

# a parameter whose own name (e.g. "pos_embed", "query_embed") matches this is an embedding
EMBEDDING_NAME = re.compile(r"embed|quer(y|ies)")


class ParamPattern(NamedTuple):
    """One ``SOLVER.PARAM_GROUPS`` entry, "regex=lr_mult,wd_mult"."""

    spec: str
    regex: re.Pattern
    lr_mult: float
    wd_mult: float


def parse_param_patterns(specs, key="SOLVER.PARAM_GROUPS"):
    """The ``ParamPattern`` of each "regex=lr_mult,wd_mult" string (the last "=" splits, so a
    regex may hold one); a ``ConfigError`` naming ``key`` and the entry for a bad one."""
    patterns = []
    for spec in specs:
        regex, _, multipliers = spec.rpartition("=")
        try:
            lr_mult, wd_mult = (float(m) for m in multipliers.split(","))
        except ValueError:
            lr_mult = wd_mult = -1.0
        if not regex or min(lr_mult, wd_mult) < 0:
            raise ConfigError(f"{key}: {spec!r} is not \"regex=lr_mult,wd_mult\" with "
                              "multipliers >= 0 (e.g. \"^head=2.0,1.0\")")
        try:
            patterns.append(ParamPattern(spec, re.compile(regex), lr_mult, wd_mult))
        except re.error as e:
            raise ConfigError(f"{key}: {spec!r}: bad regex {regex!r} ({e})") from e
    return patterns


def get_optimizer_params(model, *, base_lr, weight_decay, weight_decay_norm, bias_lr_factor=1.0,
                         weight_decay_bias=None, weight_decay_embed=None, backbone_multiplier=1.0,
                         patterns=(), key="SOLVER.PARAM_GROUPS"):
    """Detectron2's ``get_default_optimizer_params`` groups, then for each parameter: weight
    decay ``weight_decay_embed`` for an embedding (of an ``nn.Embedding``, or named like
    ``EMBEDDING_NAME``), the LR times ``backbone_multiplier`` under ``backbone.``, and the LR and
    weight decay (``weight_decay`` when its group sets none) times the multipliers of the first
    of ``patterns`` (``parse_param_patterns``) matching its name. Parameters with equal settings
    share a group: with the defaults the groups are Detectron2's. A ``ConfigError`` naming
    ``key`` for a pattern that takes no trainable parameter."""
    names = {p: n for n, p in model.named_parameters()}
    embeddings = {
        p for module in model.modules() for own_name, p in module.named_parameters(recurse=False)
        if isinstance(module, nn.Embedding) or EMBEDDING_NAME.search(own_name)
    }
    taken, params = set(), []
    groups = get_default_optimizer_params(
        model, base_lr=base_lr, weight_decay_norm=weight_decay_norm,
        bias_lr_factor=bias_lr_factor, weight_decay_bias=weight_decay_bias,
    )
    for group in groups:
        for p in group["params"]:
            settings = {k: v for k, v in group.items() if k != "params"}
            if p in embeddings and weight_decay_embed is not None:
                settings["weight_decay"] = weight_decay_embed
            lr_mult = backbone_multiplier if names[p].startswith("backbone.") else 1.0
            wd_mult = 1.0
            pattern = next((q for q in patterns if q.regex.search(names[p])), None)
            if pattern is not None:
                taken.add(pattern.spec)
                lr_mult, wd_mult = lr_mult * pattern.lr_mult, pattern.wd_mult
            if lr_mult != 1.0:
                settings["lr"] = settings["lr"] * lr_mult
            if wd_mult != 1.0:
                settings["weight_decay"] = settings.get("weight_decay", weight_decay) * wd_mult
            params.append({"params": [p], **settings})
    unused = [q.spec for q in patterns if q.spec not in taken]
    if unused:
        raise ConfigError(f"{key}: {unused[0]!r} matches no trainable parameter (or only ones "
                          f"an earlier entry took); parameter names start with: "
                          f"{sorted(names.values())[:5]}")
    return reduce_param_groups(params)
