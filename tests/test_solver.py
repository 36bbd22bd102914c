"""rtinst.solver: SOLVER.OPTIMIZER (SGD as Detectron2's, AdamW), parameter groups (backbone LR
multiplier, zero decay for norms and embeddings, SOLVER.PARAM_GROUPS), gradient clipping
(Detectron2's per parameter and "full_model"), config errors naming the key."""
import pytest
import torch
from detectron2.config import get_cfg as d2_get_cfg
from detectron2.solver import build_optimizer as d2_build_optimizer
from torch import nn

from rtinst.config import add_rtinst_config
from rtinst.engine import Trainer
from rtinst.errors import ConfigError
from rtinst.solver import build_optimizer


class TinyDetector(nn.Module):
    """A backbone (conv + BN), a head conv and, with ``embeddings``, an ``nn.Embedding`` of
    queries and a positional-embedding parameter."""

    def __init__(self, embeddings=True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        self.head = nn.Conv2d(4, 2, 1)
        if embeddings:
            self.queries = nn.Embedding(5, 4)
            self.pos_embed = nn.Parameter(torch.zeros(1, 4))


def _cfg(**solver_keys):
    cfg = d2_get_cfg()
    add_rtinst_config(cfg)
    for key, value in solver_keys.items():
        cfg.SOLVER[key] = value
    return cfg


def _settings(optimizer, model):
    """{parameter name: (lr, weight decay)} as the optimizer will use them."""
    names = {p: n for n, p in model.named_parameters()}
    return {
        names[p]: (pytest.approx(group["lr"]), pytest.approx(group["weight_decay"]))
        for group in optimizer.param_groups for p in group["params"]
    }


def test_adamw_with_backbone_multiplier_and_no_decay_on_norms_biases_and_embeddings():
    model = TinyDetector()
    cfg = _cfg(OPTIMIZER="ADAMW", BASE_LR=1e-3, WEIGHT_DECAY=0.05, BACKBONE_MULTIPLIER=0.5)
    optimizer = Trainer.build_optimizer(cfg, model)
    assert type(optimizer) is torch.optim.AdamW
    assert _settings(optimizer, model) == {
        "backbone.0.weight": (5e-4, 0.05),
        "backbone.0.bias": (5e-4, 0.0),  # AdamW: biases undecayed (WEIGHT_DECAY_BIAS None)
        "backbone.1.weight": (5e-4, 0.0),  # BatchNorm: SOLVER.WEIGHT_DECAY_NORM 0
        "backbone.1.bias": (5e-4, 0.0),
        "head.weight": (1e-3, 0.05),
        "head.bias": (1e-3, 0.0),
        "queries.weight": (1e-3, 0.0),  # nn.Embedding: SOLVER.WEIGHT_DECAY_EMBED 0
        "pos_embed": (1e-3, 0.0),  # named like an embedding
    }
    assert {(g["betas"], g["eps"]) for g in optimizer.param_groups} == {((0.9, 0.999), 1e-8)}


def test_param_groups_multiply_lr_and_decay_of_the_first_matching_pattern():
    model = TinyDetector()
    cfg = _cfg(BASE_LR=0.01, WEIGHT_DECAY=1e-4, BACKBONE_MULTIPLIER=0.1,
               PARAM_GROUPS=[r"^head\.=2.0,0.5", "bias$=1.0,0.0"])
    optimizer = build_optimizer(cfg, model)
    assert _settings(optimizer, model) == {
        "backbone.0.weight": (1e-3, 1e-4),
        "backbone.0.bias": (1e-3, 0.0),  # "bias$": decay x 0
        "backbone.1.weight": (1e-3, 0.0),
        "backbone.1.bias": (1e-3, 0.0),
        "head.weight": (0.02, 5e-5),
        "head.bias": (0.02, 5e-5),  # "^head\." came first: "bias$" does not apply
        "queries.weight": (0.01, 0.0),
        "pos_embed": (0.01, 0.0),
    }
    assert {g["momentum"] for g in optimizer.param_groups} == {0.9}


def _groups(optimizer):
    return [({k: v for k, v in g.items() if k != "params"}, [id(p) for p in g["params"]])
            for g in optimizer.param_groups]


@pytest.mark.parametrize("solver_keys", [
    {},
    {"BASE_LR": 0.02, "BIAS_LR_FACTOR": 2.0, "WEIGHT_DECAY_BIAS": 0.0, "NESTEROV": True,
     "WEIGHT_DECAY_NORM": 1e-5},
])
def test_sgd_groups_are_detectron2s(solver_keys):
    model = TinyDetector(embeddings=False)
    cfg = _cfg(**solver_keys)
    ours, theirs = build_optimizer(cfg, model), d2_build_optimizer(cfg, model)
    assert type(ours) is type(theirs) is torch.optim.SGD
    assert _groups(ours) == _groups(theirs)
    # default: BN's (decay 0) and the rest; else also the biases' (LR x 2, decay 0, BN's too)
    assert len(ours.param_groups) == (3 if solver_keys else 2)


class TwoParams(nn.Module):
    def __init__(self, size_a, size_b):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(size_a))
        self.b = nn.Parameter(torch.zeros(size_b))


@pytest.mark.parametrize("clip_type, grads, clipped", [
    ("full_model", ([3.0], [4.0]), ([0.6], [0.8])),  # one norm, 5, over both -> 1
    ("norm", ([3.0], [4.0]), ([1.0], [1.0])),  # each parameter's norm -> 1
    ("full_model", ([3.0, 4.0], [0.0]), ([0.6, 0.8], [0.0])),
    ("value", ([3.0, 4.0], [0.0]), ([1.0, 1.0], [0.0])),  # each value -> [-1, 1]
])
def test_gradient_clipping_before_the_step(clip_type, grads, clipped):
    model = TwoParams(len(grads[0]), len(grads[1]))
    cfg = _cfg(BASE_LR=0.0)
    cfg.SOLVER.CLIP_GRADIENTS.merge_from_list(
        ["ENABLED", True, "CLIP_TYPE", clip_type, "CLIP_VALUE", 1.0])
    optimizer = build_optimizer(cfg, model)
    assert isinstance(optimizer, torch.optim.SGD)
    model.a.grad, model.b.grad = torch.tensor(grads[0]), torch.tensor(grads[1])
    optimizer.step()
    torch.testing.assert_close(model.a.grad, torch.tensor(clipped[0]))
    torch.testing.assert_close(model.b.grad, torch.tensor(clipped[1]))


@pytest.mark.parametrize("keys, message", [
    ({"OPTIMIZER": "LAMB"}, r"SOLVER.OPTIMIZER: unknown optimizer 'LAMB', expected one of SGD, "
                            r"ADAMW"),
    ({"PARAM_GROUPS": ["head(=1.0,1.0"]}, r"SOLVER.PARAM_GROUPS: 'head\(=1.0,1.0': bad regex"),
    ({"PARAM_GROUPS": [r"^neck\.=2.0,1.0"]}, r"SOLVER.PARAM_GROUPS: '\^neck\\\\.=2.0,1.0' "
                                             r"matches no trainable parameter"),
    ({"PARAM_GROUPS": ["head=2.0,1.0", r"head\.weight=3.0,1.0"]},
     r"SOLVER.PARAM_GROUPS: 'head\\\\.weight=3.0,1.0' matches no trainable parameter \(or only "
     r"ones an earlier entry took\)"),
    ({"PARAM_GROUPS": ["head"]}, r"SOLVER.PARAM_GROUPS: 'head' is not \"regex=lr_mult,wd_mult\""),
    ({"PARAM_GROUPS": ["head=2.0"]}, r"SOLVER.PARAM_GROUPS: 'head=2.0' is not"),
    ({"PARAM_GROUPS": ["head=-1.0,1.0"]}, r"multipliers >= 0"),
    ({"CLIP_GRADIENTS.ENABLED": True, "CLIP_GRADIENTS.CLIP_TYPE": "global"},
     r"SOLVER.CLIP_GRADIENTS.CLIP_TYPE: unknown type 'global', expected one of value, norm, "
     r"full_model"),
    ({"CLIP_GRADIENTS.ENABLED": True, "CLIP_GRADIENTS.CLIP_VALUE": 0.0},
     r"SOLVER.CLIP_GRADIENTS.CLIP_VALUE must be > 0"),
])
def test_bad_settings_name_the_key(keys, message):
    cfg = _cfg()
    cfg.merge_from_list([item for key, value in keys.items() for item in (f"SOLVER.{key}", value)])
    with pytest.raises(ConfigError, match=message):
        build_optimizer(cfg, TinyDetector())
