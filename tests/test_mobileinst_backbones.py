"""MobileInst's backbones: TopFormer-T/S/B (its attention block, pyramid pooling and semantic
injection on hand-made tensors, output shapes, parameter counts), the converter of
hustvl/TopFormer's checkpoints (on a replica of the reference's module tree) and MobileNetV2 with
global tokens."""
import importlib.util
import math
import re
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import ShapeSpec
from detectron2.modeling import build_backbone
from rtinst.config import get_cfg

if importlib.util.find_spec("mobileinst") is None:  # the project is not installed
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "projects" / "MobileInst"))

from mobileinst.config import add_mobileinst_config  # noqa: E402
from mobileinst.topformer import (  # noqa: E402
    TOPFORMER_VARIANTS,
    MultiHeadConvAttention,
    PyramidPoolAggregation,
    SemanticInjection,
    TopFormer,
    TopFormerAttentionBlock,
    resolve_norm,
)
from mobileinst.topformer_conversion import (  # noqa: E402
    convert_topformer_state_dict,
    is_topformer_state_dict,
)

# hustvl/TopFormer's local_configs/topformer/topformer_{tiny,small,base}.py: the token pyramid's
# rows (kernel, expansion, channels, stride), the token blocks, heads and injected channels
REFERENCE_CONFIGS = {
    "T": dict(cfg=[[3, 1, 16, 1], [3, 4, 16, 2], [3, 3, 16, 1], [5, 3, 32, 2], [5, 3, 32, 1],
                   [3, 3, 64, 2], [3, 3, 64, 1], [5, 6, 96, 2], [5, 6, 96, 1]],
              embed_out_indice=[2, 4, 6, 8], num_heads=4, out_channels=128),
    "S": dict(cfg=[[3, 1, 16, 1], [3, 4, 24, 2], [3, 3, 24, 1], [5, 3, 48, 2], [5, 3, 48, 1],
                   [3, 3, 96, 2], [3, 3, 96, 1], [5, 6, 128, 2], [5, 6, 128, 1], [3, 6, 128, 1]],
              embed_out_indice=[2, 4, 6, 9], num_heads=6, out_channels=192),
    "B": dict(cfg=[[3, 1, 16, 1], [3, 4, 32, 2], [3, 3, 32, 1], [5, 3, 64, 2], [5, 3, 64, 1],
                   [3, 3, 128, 2], [3, 3, 128, 1], [5, 6, 160, 2], [5, 6, 160, 1],
                   [3, 6, 160, 1]],
              embed_out_indice=[2, 4, 6, 9], num_heads=8, out_channels=256),
}


def _cfg(**topformer):
    cfg = get_cfg()
    if "TOPFORMER" not in cfg.MODEL:
        add_mobileinst_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.BACKBONE.NAME = "build_topformer_backbone"
    cfg.MODEL.MOBILENET_V2.PRETRAINED = False
    for key, value in topformer.items():
        cfg.MODEL.TOPFORMER[key] = value
    return cfg


def _identity_norms(module: nn.Module) -> nn.Module:
    """Evaluation mode with every fresh batch norm exactly the identity."""
    module.eval()
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 0.0
    return module


def _set_identity(conv: nn.Conv2d):
    with torch.no_grad():
        conv.weight.copy_(torch.eye(conv.out_channels)[:, :, None, None])


def test_attention_block_with_zero_value_and_mlp_is_identity():
    torch.manual_seed(0)
    block = TopFormerAttentionBlock(dim=8, num_heads=2, drop_path=0.5).eval()
    with torch.no_grad():
        block.attention.value[0].weight.zero_()
        block.mlp.fc2[0].weight.zero_()
    x = torch.randn(2, 8, 3, 4)
    assert torch.equal(block(x), x)


def test_attention_of_two_tokens_by_hand():
    attention = _identity_norms(MultiHeadConvAttention(dim=2, num_heads=1, key_dim=2,
                                                       attn_ratio=1))
    for conv in (attention.query, attention.key, attention.value, attention.proj):
        _set_identity(conv[0])
    a, b = (1.0, 0.0), (0.5, 2.0)  # two tokens of a 1 x 2 map: q = k = v = the token
    x = torch.tensor([[a[0], b[0]], [a[1], b[1]]]).reshape(1, 2, 1, 2)

    def softmax_row(q):
        logits = [(q[0] * k[0] + q[1] * k[1]) / math.sqrt(2) for k in (a, b)]
        exp = [math.exp(v) for v in logits]
        return [e / sum(exp) for e in exp]

    weights = [softmax_row(a), softmax_row(b)]
    assert torch.allclose(attention.attention_weights(x)[0, 0], torch.tensor(weights))
    # output: ReLU6 of the attention-weighted tokens (identity projection), channel-major
    mixed = [[min(max(w[0] * a[c] + w[1] * b[c], 0.0), 6.0) for w in weights] for c in (0, 1)]
    assert torch.allclose(attention(x), torch.tensor(mixed).reshape(1, 2, 1, 2))


def test_pyramid_pooling_averages_to_half_the_last_token():
    quadrants = torch.kron(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.ones(16, 16))
    tokens = [quadrants.expand(1, 1, 32, 32), torch.full((1, 2, 16, 16), 7.0),
              torch.zeros(1, 1, 8, 8), torch.arange(16.0).reshape(1, 1, 4, 4)]
    pooled = PyramidPoolAggregation(stride=2)(tokens)
    assert pooled.shape == (1, 5, 2, 2)
    assert torch.equal(pooled[0, 0], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(pooled[0, 1:3], torch.full((2, 2, 2), 7.0))
    # the last token's 2 x 2 windows: (0 + 1 + 4 + 5) / 4, ...
    assert torch.equal(pooled[0, 4], torch.tensor([[2.5, 4.5], [10.5, 12.5]]))
    # a 128 x 192 input (stride-32 token 4 x 6) gives 2 x 3 = 128 / 64 x 192 / 64; a size that is
    # no multiple of 64 rounds up (stride-32 token 5 x 7 -> 3 x 4)
    for last, size in (((4, 6), (2, 3)), ((5, 7), (3, 4))):
        tokens = [torch.ones(1, 1, 8 * last[0], 8 * last[1]), torch.ones(1, 1, *last)]
        assert PyramidPoolAggregation(stride=2)(tokens).shape[-2:] == size


def test_semantic_injection_by_hand():
    injection = _identity_norms(SemanticInjection(2, 2))
    for conv in (injection.local_embedding, injection.global_embedding, injection.global_gate):
        _set_identity(conv[0])
    local = torch.tensor([[1.0, -2.0], [0.5, 3.0]]).expand(1, 2, 2, 2)
    g = [0.3, -1.2]  # a 1 x 1 global slice: upsampled, it is the same everywhere
    out = injection(local, torch.tensor(g).reshape(1, 2, 1, 1))
    expected = [[[v * (1 / (1 + math.exp(-g[c]))) + g[c] for v in row]
                 for row in ([1.0, -2.0], [0.5, 3.0])] for c in (0, 1)]
    assert torch.allclose(out, torch.tensor(expected).unsqueeze(0))


@pytest.mark.parametrize("arch", ["T", "S", "B"])
def test_topformer_outputs(arch):
    backbone = build_backbone(_cfg(ARCH=arch)).eval()
    ref = REFERENCE_CONFIGS[arch]
    token_channels = [ref["cfg"][i][2] for i in ref["embed_out_indice"]]
    expected = {"x3": (ref["out_channels"], 8), "x4": (ref["out_channels"], 16),
                "x5": (ref["out_channels"], 32), "x6": (sum(token_channels), 64)}
    shapes = backbone.output_shape()
    assert {n: (s.channels, s.stride) for n, s in shapes.items()} == expected
    assert backbone.size_divisibility == 64
    assert [b.drop_path.p for b in backbone.transformer] == pytest.approx([0, 0.1 / 3, 0.2 / 3,
                                                                           0.1])
    with torch.no_grad():
        outputs = backbone(torch.zeros(1, 3, 128, 192))
    assert list(outputs) == list(expected)
    for name, (channels, stride) in expected.items():
        assert outputs[name].shape == (1, channels, 128 // stride, 192 // stride), name


# measured: T 1,369,920, S 2,968,464, B 4,958,048 parameters; the TopFormer paper's ADE20K
# segmentation models (hustvl's README too) have 1.4M, 3.1M and 5.1M with their heads (36K, 66K
# and 105K parameters for 150 classes)
@pytest.mark.parametrize("arch, paper_millions", [("T", 1.4), ("S", 3.1), ("B", 5.1)])
def test_topformer_parameter_counts(arch, paper_millions):
    count = sum(p.numel() for p in TopFormer(TOPFORMER_VARIANTS[arch]).parameters())
    assert 0.9 * paper_millions * 1e6 < count < paper_millions * 1e6


def test_topformer_trains_every_parameter_and_takes_group_norm():
    torch.manual_seed(0)
    backbone = TopFormer(TOPFORMER_VARIANTS["T"], norm=resolve_norm("GN", "MODEL.TOPFORMER.NORM"))
    backbone.train()
    outputs = backbone(torch.randn(2, 3, 64, 64))
    sum(o.square().mean() for o in outputs.values()).backward()
    assert [n for n, p in backbone.named_parameters() if p.grad is None] == []


@pytest.mark.parametrize("key, value, message", [
    ("ARCH", "L", "MODEL.TOPFORMER.ARCH"),
    ("NORM", "LN", "MODEL.TOPFORMER.NORM"),
    ("DROP_PATH", 1.0, "MODEL.TOPFORMER.DROP_PATH"),
])
def test_topformer_config_errors(key, value, message):
    with pytest.raises(ValueError, match=message):
        build_backbone(_cfg(**{key: value}))


def test_topformer_needs_three_input_channels():
    with pytest.raises(ValueError, match="4 input channels"):
        build_backbone(_cfg(), ShapeSpec(channels=4))


def _conv_bn(in_channels, out_channels, kernel_size=1, stride=1, groups=1, conv="c"):
    """The reference's Conv2d_BN (children "c", "bn") or mmcv's ConvModule ("conv", "bn")."""
    return nn.Sequential(OrderedDict([
        (conv, nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2,
                         groups=groups, bias=False)),
        ("bn", nn.BatchNorm2d(out_channels)),
    ]))


def _reference_topformer(ref) -> nn.Module:
    """A replica of the parameters of hustvl/TopFormer's ``Topformer`` backbone: its module
    tree's names and shapes (mmseg/models/backbones/topformer.py), without its forward."""
    root, tpm = nn.Module(), nn.Module()
    tpm.stem = nn.Sequential(_conv_bn(3, 16, 3, 2), nn.ReLU())
    channels = 16
    for index, (kernel, expansion, out_channels, stride) in enumerate(ref["cfg"], start=1):
        hidden = channels * expansion
        layers = [] if expansion == 1 else [_conv_bn(channels, hidden), nn.ReLU()]
        layers += [_conv_bn(hidden, hidden, kernel, stride, hidden), nn.ReLU(),
                   _conv_bn(hidden, out_channels)]
        layer = nn.Module()
        layer.conv = nn.Sequential(*layers)
        tpm.add_module(f"layer{index}", layer)
        channels = out_channels
    token_channels = [ref["cfg"][i][2] for i in ref["embed_out_indice"]]
    dim, heads = sum(token_channels), ref["num_heads"]
    blocks = nn.ModuleList()
    for _ in range(4):
        block, attn, mlp = nn.Module(), nn.Module(), nn.Module()
        attn.to_q, attn.to_k = _conv_bn(dim, 16 * heads), _conv_bn(dim, 16 * heads)
        attn.to_v = _conv_bn(dim, 32 * heads)
        attn.proj = nn.Sequential(nn.ReLU6(), _conv_bn(32 * heads, dim))
        mlp.fc1, mlp.fc2 = _conv_bn(dim, 2 * dim), _conv_bn(2 * dim, dim)
        mlp.dwconv = nn.Conv2d(2 * dim, 2 * dim, 3, 1, 1, groups=2 * dim)
        block.attn, block.mlp = attn, mlp
        blocks.append(block)
    root.tpm, root.trans = tpm, nn.Module()
    root.trans.transformer_blocks = blocks
    root.SIM = nn.ModuleList([nn.Identity()])
    for channels in token_channels[1:]:
        injection = nn.Module()
        for name in ("local_embedding", "global_embedding", "global_act"):
            injection.add_module(name, _conv_bn(channels, ref["out_channels"], conv="conv"))
        root.SIM.append(injection)
    return root


def _in_model(backbone: nn.Module) -> nn.Module:
    model = nn.Module()
    model.backbone = backbone
    return model


@pytest.mark.parametrize("arch", ["T", "S", "B"])
def test_convert_segmentation_checkpoint(arch):
    reference = _reference_topformer(REFERENCE_CONFIGS[arch]).state_dict()
    head = torch.ones(150, 256, 1, 1)
    checkpoint = {"backbone." + k: v for k, v in reference.items()}
    checkpoint["decode_head.conv_seg.weight"] = head
    assert is_topformer_state_dict(checkpoint) and is_topformer_state_dict(reference)
    converted = convert_topformer_state_dict(checkpoint)
    assert not is_topformer_state_dict(converted)
    assert converted["decode_head.conv_seg.weight"] is head
    ours = {k: v for k, v in converted.items() if k.startswith("backbone.")}
    assert len(ours) == len(reference)
    # every parameter and statistic of ours is filled, with the reference's shapes
    _in_model(TopFormer(TOPFORMER_VARIANTS[arch])).load_state_dict(ours, strict=True)
    for ref_key, our_key in [
        ("tpm.stem.0.c.weight", "token_pyramid.stem.0.weight"),
        ("tpm.layer1.conv.0.c.weight", "token_pyramid.blocks.0.depthwise.0.weight"),
        ("tpm.layer2.conv.0.bn.running_var", "token_pyramid.blocks.1.expand.1.running_var"),
        ("tpm.layer2.conv.4.c.weight", "token_pyramid.blocks.1.project.0.weight"),
        ("trans.transformer_blocks.3.attn.proj.1.bn.bias", "transformer.3.attention.proj.1.bias"),
        ("trans.transformer_blocks.0.attn.to_k.c.weight", "transformer.0.attention.key.0.weight"),
        ("trans.transformer_blocks.0.mlp.dwconv.bias", "transformer.0.mlp.dwconv.0.bias"),
        ("SIM.1.global_act.conv.weight", "injections.x3.global_gate.0.weight"),
        ("SIM.3.local_embedding.bn.weight", "injections.x5.local_embedding.1.weight"),
    ]:
        assert converted["backbone." + our_key] is checkpoint["backbone." + ref_key]


def test_convert_classification_checkpoint_and_keep_ours():
    reference = _reference_topformer(REFERENCE_CONFIGS["T"]).state_dict()
    checkpoint = {k: v for k, v in reference.items() if not k.startswith("SIM.")}
    checkpoint["head.weight"] = torch.zeros(1000, 208)
    converted = convert_topformer_state_dict(checkpoint)
    assert "head.weight" in converted
    model = _in_model(TopFormer(TOPFORMER_VARIANTS["T"]))
    result = model.load_state_dict(converted, strict=False)
    assert result.unexpected_keys == ["head.weight"]
    assert {k.split(".")[1] for k in result.missing_keys} == {"injections"}
    # our own checkpoints pass unchanged (the converter runs on every MobileInst checkpoint)
    ours = model.state_dict()
    assert list(convert_topformer_state_dict(ours)) == list(ours)


def test_converted_attention_is_the_references():
    """The reference computes softmax(q k^T) without 1 / sqrt(key dim); the converted query
    normalisation makes ours equal to it."""
    torch.manual_seed(0)
    reference = _reference_topformer(REFERENCE_CONFIGS["T"]).eval()
    with torch.no_grad():
        for name, tensor in reference.state_dict().items():
            if "running_var" in name:
                tensor.uniform_(0.5, 1.5)
            elif tensor.is_floating_point():
                tensor.uniform_(-1, 1)
    model = _in_model(TopFormer(TOPFORMER_VARIANTS["T"])).eval()
    model.load_state_dict(convert_topformer_state_dict(reference.state_dict()), strict=False)
    x = torch.randn(1, 208, 2, 3)
    attn = reference.trans.transformer_blocks[1].attn
    with torch.no_grad():
        q = attn.to_q(x).reshape(1, 4, 16, 6).transpose(-1, -2)
        k = attn.to_k(x).reshape(1, 4, 16, 6)
        expected = (q @ k).softmax(dim=-1)
        ours = model.backbone.transformer[1].attention.attention_weights(x)
    assert torch.allclose(ours, expected, atol=1e-6)


@pytest.mark.parametrize("key", [
    "backbone.SIM.0.local_embedding.conv.weight",  # the reference has no stride-4 injection
    "tpm.layer1.conv.0.c.bias",
    "backbone.trans.transformer_blocks.0.attn.to_o.c.weight",
])
def test_convert_unknown_topformer_key_names_it(key):
    with pytest.raises(ValueError, match=re.escape(repr(key))):
        convert_topformer_state_dict({"tpm.stem.0.c.weight": torch.zeros(16, 3, 3, 3),
                                      key: torch.zeros(1)})


def test_mobilenet_v2_global_outputs():
    cfg = _cfg()
    cfg.MODEL.BACKBONE.NAME = "build_mobilenet_v2_global_backbone"
    cfg.MODEL.MOBILENET_V2.OUT_FEATURES = ["res4"]  # ignored: X3-X5 are res3-res5
    cfg.MODEL.MNV2_GLOBAL.DEPTH = 1
    backbone = build_backbone(cfg).eval()
    expected = {"x3": (32, 8), "x4": (96, 16), "x5": (320, 32), "x6": (256, 64)}
    assert {n: (s.channels, s.stride) for n, s in backbone.output_shape().items()} == expected
    assert backbone.size_divisibility == 64 and len(backbone.transformer) == 1
    x = torch.randn(1, 3, 128, 192)
    with torch.no_grad():
        outputs = backbone(x)
        res5 = backbone.bottom_up(x)["res5"]
        x6 = backbone.transformer(backbone.proj(F.avg_pool2d(res5, 2)))
    for name, (channels, stride) in expected.items():
        assert outputs[name].shape == (1, channels, 128 // stride, 192 // stride), name
    assert torch.allclose(outputs["x5"], res5) and torch.allclose(outputs["x6"], x6)


@pytest.mark.parametrize("key, value", [("DEPTH", -1), ("CHANNELS", 0), ("DROP_PATH", 1.5)])
def test_mobilenet_v2_global_config_errors(key, value):
    cfg = _cfg()
    cfg.MODEL.BACKBONE.NAME = "build_mobilenet_v2_global_backbone"
    cfg.MODEL.MNV2_GLOBAL[key] = value
    with pytest.raises(ValueError, match=f"MODEL.MNV2_GLOBAL.{key}"):
        build_backbone(cfg)
