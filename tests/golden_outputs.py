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
from tiny_models import (  # noqa: E402
    batch_with_masks,
    tiny_blendmask_cfg,
    tiny_blitzmask_cfg,
    tiny_centermask_cfg,
    tiny_fcos_cfg,
)

FIXTURES = TESTS / "fixtures"
IMAGE_SIZE = (150, 210)  # (height, width) of the inference image
TOP_K = 10


def _untrained(cfg):
    """``cfg`` from scratch (the named weights replace any), keeping the top ``TOP_K`` FCOS
    candidates whatever their scores."""
    cfg.MODEL.MOBILENET_V2.PRETRAINED = False
    cfg.MODEL.FCOS.INFERENCE_TH_TEST = 0.0
    cfg.MODEL.FCOS.POST_NMS_TOPK_TEST = TOP_K
    return cfg


def _deformable_fcos_cfg():
    cfg = tiny_fcos_cfg()
    cfg.MODEL.FCOS.USE_DEFORMABLE = True
    return cfg


def _deeplabv3plus_blendmask_cfg():
    cfg = tiny_blendmask_cfg()
    cfg.MODEL.BASIS_MODULE.NAME = "DeepLabV3Plus"
    cfg.MODEL.BASIS_MODULE.IN_FEATURES = ["res3", "res5"]
    cfg.MODEL.BASIS_MODULE.NUM_CONVS = 2
    return cfg


def _blitzmask_cfg():
    """The fixture was recorded with uncropped inference masks: ``MASK_CROP "loss"`` (the
    default "box" crops them to their box; tests/test_blitzmask.py tests it)."""
    return tiny_blitzmask_cfg("MODEL.BLITZMASK.TEST.SCORE_THRESH", "0.0",
                              "MODEL.BLITZMASK.TEST.TOPK", str(TOP_K),
                              "MODEL.BLITZMASK.MASK_CROP", "loss")


MODELS = {
    "fcos": lambda: _untrained(tiny_fcos_cfg()),
    "fcos_deformable": lambda: _untrained(_deformable_fcos_cfg()),
    "blendmask_protonet": lambda: _untrained(tiny_blendmask_cfg()),
    "blendmask_deeplabv3plus": lambda: _untrained(_deeplabv3plus_blendmask_cfg()),
    "centermask": lambda: _untrained(tiny_centermask_cfg()),
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
