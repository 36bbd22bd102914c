"""Golden outputs: small models with weights that depend only on each tensor's name, run on a
fixed batch (training losses, gradient norms) and a fixed image (detections), so that a
refactoring that must not change a model's computation can be checked against a saved copy.

    python tests/golden_outputs.py          # rewrites tests/fixtures/golden_<model>.pt

Rewrite the fixtures only when a change is meant to change the outputs (say so in the commit).
"""
import sys
import zlib
from pathlib import Path

import numpy as np
import torch

from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from rtinst.benchmark.model import calibrate_normalisation

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from tiny_fcos import CONFIGS, batch_with_masks, tiny_fcos_cfg  # noqa: E402

FIXTURES = TESTS / "fixtures"
IMAGE_SIZE = (150, 210)  # (height, width) of the inference image
TOP_K = 10


def _blendmask_cfg(bottom_module="ProtoNet"):
    cfg = tiny_fcos_cfg()
    cfg.MODEL.MOBILENET_V2.PRETRAINED = False
    cfg.MODEL.META_ARCHITECTURE = "BlendMask"
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.BASIS_MODULE.NUM_CLASSES = 3
    cfg.MODEL.BASIS_MODULE.NORM = "BN"
    cfg.MODEL.BASIS_MODULE.CONVS_DIM = 32
    cfg.MODEL.BLENDMASK.ATTN_SIZE = 4
    cfg.MODEL.BLENDMASK.BOTTOM_RESOLUTION = 16
    if bottom_module == "DeepLabV3Plus":
        cfg.MODEL.BASIS_MODULE.NAME = "DeepLabV3Plus"
        cfg.MODEL.BASIS_MODULE.IN_FEATURES = ["res3", "res5"]
        cfg.MODEL.BASIS_MODULE.NUM_CONVS = 2
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = TOP_K
    return cfg


def _fcos_cfg(deformable=False):
    cfg = tiny_fcos_cfg()
    cfg.MODEL.MOBILENET_V2.PRETRAINED = False
    cfg.MODEL.FCOS.USE_DEFORMABLE = deformable
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = TOP_K
    return cfg


def _centermask_cfg():
    cfg = _fcos_cfg()
    cfg.merge_from_list([
        "MODEL.META_ARCHITECTURE", "CenterMask", "MODEL.MASK_ON", True, "MODEL.MASKIOU_ON", True,
        "MODEL.ROI_HEADS.NAME", "CenterROIHeads", "MODEL.ROI_HEADS.IN_FEATURES", ["p3", "p4", "p5"],
        "MODEL.ROI_HEADS.NUM_CLASSES", 3,
        "MODEL.ROI_MASK_HEAD.NAME", "SpatialAttentionMaskHead",
        "MODEL.ROI_MASK_HEAD.NUM_CONV", 2, "MODEL.ROI_MASK_HEAD.CONV_DIM", 32,
        "MODEL.ROI_MASKIOU_HEAD.NUM_CONV", 2, "MODEL.ROI_MASKIOU_HEAD.CONV_DIM", 32,
    ])
    return cfg


def _blitzmask_cfg():
    from rtinst.engine import load_config

    return load_config(str(CONFIGS / "BlitzMask/MNV2_shapes.yaml"), [
        "MODEL.DEVICE", "cpu", "MODEL.BLITZMASK.NUM_CLASSES", "3",
        "MODEL.SEPARABLE_FPN.OUT_CHANNELS", "32", "MODEL.BLITZMASK.HEAD_CHANNELS", "32",
        "MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.0", "MODEL.BLITZMASK.TEST.TOPK", str(TOP_K),
    ])


MODELS = {
    "fcos": _fcos_cfg,
    "fcos_deformable": lambda: _fcos_cfg(deformable=True),
    "blendmask_protonet": _blendmask_cfg,
    "blendmask_deeplabv3plus": lambda: _blendmask_cfg("DeepLabV3Plus"),
    "centermask": _centermask_cfg,
    "blitzmask": _blitzmask_cfg,
}


@torch.no_grad()
def set_named_weights(model):
    """Fills every floating-point parameter and buffer from a generator seeded by its name (He
    scale for weights, near-identity statistics for normalisation): the weights depend neither
    on the random state nor on the order in which modules are built, only on the names (which
    checkpoints depend on too)."""
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        noise = torch.randn(tensor.shape, generator=generator)
        if name.endswith("running_var"):
            value = 0.5 + torch.rand(tensor.shape, generator=generator)
        elif name.endswith("running_mean") or name.endswith("bias"):
            value = 0.1 * noise
        elif tensor.dim() <= 1:
            value = 1.0 + 0.1 * noise
        else:
            fan_in = tensor[0].numel()
            value = noise * (2.0 / fan_in) ** 0.5
        tensor.copy_(value)


def _image():
    rng = np.random.default_rng(0)
    return torch.as_tensor(rng.integers(0, 255, (3, *IMAGE_SIZE)).astype(np.float32))


def compute(name):
    """{output name: tensor} of model ``name`` with ``set_named_weights`` and its normalisation
    statistics calibrated on the fixed image: its training losses and the gradient norms of its
    parameters on the fixed batch, then its inference instances on the fixed image."""
    torch.manual_seed(0)
    model = build_model(MODELS[name]())
    set_named_weights(model)
    image = {"image": _image(), "height": IMAGE_SIZE[0], "width": IMAGE_SIZE[1]}
    calibrate_normalisation(model.eval(), [image])  # realistic activations, unsaturated scores
    outputs = {}
    model.train()
    with EventStorage():
        losses = model(batch_with_masks())
    for key, value in losses.items():
        outputs[f"loss/{key}"] = value.detach()
    sum(losses.values()).backward()
    for key, param in model.named_parameters():
        if param.grad is not None:
            outputs[f"grad_norm/{key}"] = param.grad.norm()
    model.eval()
    with torch.no_grad():
        instances = model([image])[0]["instances"]
    outputs["pred_boxes"] = instances.pred_boxes.tensor
    outputs["scores"] = instances.scores
    outputs["pred_classes"] = instances.pred_classes
    if instances.has("mask_scores"):
        outputs["mask_scores"] = instances.mask_scores
    if instances.has("pred_masks"):  # bool (N, H, W), stored as bits
        outputs["pred_masks_bits"] = torch.from_numpy(np.packbits(instances.pred_masks.numpy()))
    return outputs


def fixture_path(name):
    return FIXTURES / f"golden_{name}.pt"


def main():
    FIXTURES.mkdir(exist_ok=True)
    for name in MODELS:
        outputs = compute(name)
        torch.save(outputs, fixture_path(name))
        print(f"{fixture_path(name)}: {len(outputs)} tensors, "
              f"{len(outputs['scores'])} detections")


if __name__ == "__main__":
    import rtinst  # noqa: F401

    main()
