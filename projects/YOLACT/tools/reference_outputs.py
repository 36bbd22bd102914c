#!/usr/bin/env python
"""Run the original YOLACT / YOLACT++ (dbolya/yolact) on CPU with seeded weights and
freeze what it outputs into a small JSON fixture.

Usage::

    python projects/YOLACT/tools/reference_outputs.py \
        --yolact-repo /work/ref/yolact --output tests/fixtures/yolact

The reference checkout is imported from ``--yolact-repo`` (put on ``sys.path``) and is
*not* modified: everything needed to run it on a CPU-only torch 2.x is patched here, at
runtime (see ``_ReferenceShims``).  Weights, images and targets come from
``seeded_weights.py`` (next to this file), which our own tests import too.

For each config it writes ``<output>/<config>_keys.tsv`` (the reference model's
state-dict keys) and ``<output>/<config>_reference.json`` (detections, losses, metadata).
This script is a developer tool; the test suite never runs it.
"""
import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
import types
import warnings

import numpy as np
import torch
import torch.nn as nn

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import seeded_weights as sw  # noqa: E402

CONFIGS = ("yolact_base_config", "yolact_plus_resnet50_config")
SHARED_KEY_SPECS = {
    "yolact_base_config": "yolact_base_550_R101.tsv",
}
IMAGE_SIZE = 550
INFERENCE_SEED = 0
LOSS_SEEDS = (1, 2)
LOSS_TORCH_SEED = 0
MASK_SUBSAMPLE_LIMIT = 100  # the reference's cfg.masks_to_train for these configs
# the other published checkpoints (yolact_resnet50_54_800000.pth, yolact_plus_base_54_800000.pth):
# only their key lists are written
KEY_LIST_CONFIGS = ("yolact_resnet50_config", "yolact_plus_base_config")


# ----------------------------------------------------------------------------- shims
class FakeDCN(nn.Module):
    """Stand-in for ``dcn_v2.DCN`` (CharlesShang/DCNv2) on top of torchvision.

    Same parameter layout as the reference's DCN: ``weight`` [out, in, k, k], ``bias``
    [out] and ``conv_offset_mask`` (a Conv2d with ``3*k*k*deformable_groups`` outputs).
    The forward follows DCN: offsets are the first two thirds of ``conv_offset_mask``'s
    output (chunked in three and the first two concatenated), the modulation mask is the
    sigmoid of the last third.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation=1, deformable_groups=1):
        super().__init__()
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size)
        self.stride = pair(stride)
        self.padding = pair(padding)
        self.dilation = pair(dilation)
        self.deformable_groups = deformable_groups
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *self.kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        kk = self.kernel_size[0] * self.kernel_size[1]
        self.conv_offset_mask = nn.Conv2d(
            in_channels, deformable_groups * 3 * kk, kernel_size=self.kernel_size,
            stride=self.stride, padding=self.padding, bias=True)
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        nn.init.zeros_(self.conv_offset_mask.weight)
        nn.init.zeros_(self.conv_offset_mask.bias)

    def forward(self, x):
        import torchvision

        o1, o2, mask = torch.chunk(self.conv_offset_mask(x), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        return torchvision.ops.deform_conv2d(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask)


@contextlib.contextmanager
def _patched(obj, name, value):
    had = hasattr(obj, name)
    old = getattr(obj, name, None)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            delattr(obj, name)


class Reference:
    """The imported reference modules, plus the runtime patches they need on CPU."""

    def __init__(self, repo):
        self.repo = os.path.abspath(repo)
        self.patches = []
        if not os.path.isfile(os.path.join(self.repo, "yolact.py")):
            raise SystemExit("not a dbolya/yolact checkout: %s" % self.repo)
        for mod in ("yolact", "backbone", "data", "layers", "utils", "dcn_v2"):
            if mod in sys.modules or any(k.startswith(mod + ".") for k in sys.modules):
                raise SystemExit("module %r already imported; run this script in a fresh interpreter" % mod)
        sys.path.insert(0, self.repo)
        sys.dont_write_bytecode = True  # leave the checkout untouched (no __pycache__)

        # backbone.py does ``from dcn_v2 import DCN`` (a CUDA extension in the reference).
        fake = types.ModuleType("dcn_v2")
        fake.DCN = FakeDCN
        fake.__file__ = __file__
        sys.modules["dcn_v2"] = fake
        self.patches.append("dcn_v2: fake module (torchvision.ops.deform_conv2d) in sys.modules")

        # yolact.py calls torch.cuda.current_device() at import (raises without a GPU);
        # it also picks use_jit = torch.cuda.device_count() <= 1, which is True here and
        # works on torch 2.x, so the FPN stays a ScriptModule as on a single-GPU machine.
        stack = contextlib.ExitStack()
        with stack:
            if not torch.cuda.is_available():
                stack.enter_context(_patched(torch.cuda, "current_device", lambda: 0))
                self.patches.append("torch.cuda.current_device -> 0 while importing yolact.py")
            self.yolact = importlib.import_module("yolact")
        self.config = importlib.import_module("data.config")
        self.layers = importlib.import_module("layers")
        self.output_utils = importlib.import_module("layers.output_utils")
        self.augmentations = importlib.import_module("utils.augmentations")
        self.box_utils = importlib.import_module("layers.box_utils")
        for mod in (self.yolact, self.config, self.output_utils, self.augmentations):
            if not os.path.abspath(mod.__file__).startswith(self.repo + os.sep):
                raise SystemExit("imported %s from %s, not from %s" % (mod.__name__, mod.__file__, self.repo))
        self.use_jit = bool(self.yolact.use_jit)
        try:
            import pyximport  # noqa: F401
            self.has_cython = True
        except ImportError:
            self.has_cython = False

    @property
    def cfg(self):
        return self.config.cfg

    def commit(self):
        try:
            return subprocess.check_output(["git", "-C", self.repo, "rev-parse", "HEAD"], text=True).strip()
        except Exception:  # pragma: no cover - not a git checkout
            return "unknown"

    def fast_base_transform(self):
        # FastBaseTransform.__init__ moves its mean/std to the GPU with .cuda(); on CPU
        # make .cuda() a no-op while constructing it (its forward moves them to the
        # image's device anyway).
        if torch.cuda.is_available():
            return self.augmentations.FastBaseTransform()
        with _patched(torch.Tensor, "cuda", lambda self, *a, **k: self):
            t = self.augmentations.FastBaseTransform()
        note = "torch.Tensor.cuda -> identity while constructing FastBaseTransform"
        if note not in self.patches:
            self.patches.append(note)
        return t


# ----------------------------------------------------------------------------- helpers
def _rle(mask):
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    counts = rle["counts"]
    return {"size": [int(v) for v in rle["size"]],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def _f(v):
    return float(v)


def _preprocess(ref, transform, images):
    batch = torch.from_numpy(np.stack(images, 0)).float()  # [n, h, w, 3] BGR, like eval.py
    return transform(batch)


def build_net(ref, config_name):
    ref.config.set_cfg(config_name)
    cfg = ref.cfg
    torch.manual_seed(0)  # only affects the constructor's own (overwritten) init
    net = ref.yolact.Yolact()
    state = net.state_dict()
    spec = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()]
    weights = sw.seeded_state_dict(spec)
    net.load_state_dict(weights, strict=True)
    net.weights_digest = sw.state_dict_digest(weights)
    return net, cfg, spec


def run_inference(ref, net, transform, seed=INFERENCE_SEED):
    cfg = ref.cfg
    net.eval()
    net.detect.use_fast_nms = True
    net.detect.use_cross_class_nms = False
    cfg.mask_proto_debug = False  # eval.py sets this from its --mask_proto_debug flag
    img = sw.seeded_image(seed, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        batch = _preprocess(ref, transform, [img])
        dets = net(batch)
        det = dets[0]["detection"]
        if det is None:
            raise RuntimeError("the reference produced no detection at all")
        proto = det["proto"].clone()
        raw_boxes = det["box"].clone() * IMAGE_SIZE  # Detect output, relative -> pixels
        coeffs = det["mask"].clone()
        # postprocess() overwrites det['box'] in place (sanitize_coordinates); keep the
        # sanitized float boxes too by mirroring its clamp on a copy.
        classes, scores, boxes_int, masks = ref.output_utils.postprocess(
            dets, IMAGE_SIZE, IMAGE_SIZE, crop_masks=True, score_threshold=0)
        sanitized = det["box"].clone()  # after the in-place sanitize, before .long()
    if isinstance(scores, (list, tuple)):
        box_scores, mask_scores = scores
    else:
        box_scores, mask_scores = scores, None
    masks = masks.cpu().numpy().astype(np.uint8)
    detections = []
    for i in range(len(classes)):
        d = {
            "class": int(classes[i]),
            "box": [_f(v) for v in raw_boxes[i]],
            "box_sanitized": [_f(v) for v in sanitized[i]],
            "box_int": [int(v) for v in boxes_int[i]],
            "score": _f(box_scores[i]),
            "coeffs": [_f(v) for v in coeffs[i]],
        }
        if mask_scores is not None:
            d["mask_score"] = _f(mask_scores[i])
        d["mask_area"] = int(masks[i].sum())
        d["mask_rle"] = _rle(masks[i])
        detections.append(d)
    coeff_abs = coeffs.abs()
    return {
        "image_seed": seed,
        "image_sha256": sw.array_digest(img),
        "preprocess": "utils.augmentations.FastBaseTransform on a [1, H, W, 3] float BGR tensor "
                      "(resize to max_size, (x - MEANS) / STD in BGR, then BGR -> RGB)",
        "means_bgr": [_f(v) for v in ref.config.MEANS],
        "std_bgr": [_f(v) for v in ref.config.STD],
        "image_size": [IMAGE_SIZE, IMAGE_SIZE],
        "fast_nms": True,
        "cross_class_nms": False,
        "crop_masks": True,
        "score_threshold": 0,
        "num_detections": len(detections),
        "proto_shape": [int(v) for v in proto.shape],
        "proto_sum": _f(proto.double().sum()),
        "coeff_abs_mean": _f(coeff_abs.mean()),
        "coeff_frac_saturated": _f((coeff_abs > 0.99).float().mean()),
        "detections": detections,
    }


def reference_training_targets(targets_list, height=IMAGE_SIZE, width=IMAGE_SIZE):
    """The reference's training format: per image [num_obj, 5] (x1,y1,x2,y2 relative,
    label) with crowd objects last, masks float [num_obj, H, W], and num_crowds."""
    boxes_t, masks_t, num_crowds, orders = [], [], [], []
    scale = np.array([width, height, width, height], dtype=np.float64)
    for t in targets_list:
        order = [i for i in range(len(t["iscrowd"])) if not t["iscrowd"][i]]
        order += [i for i in range(len(t["iscrowd"])) if t["iscrowd"][i]]
        rel = t["boxes"][order] / scale
        tgt = np.concatenate([rel, t["classes"][order][:, None].astype(np.float64)], 1)
        boxes_t.append(torch.from_numpy(tgt).float())
        masks_t.append(torch.from_numpy(t["masks"][order]).float())
        num_crowds.append(int(t["iscrowd"].sum()))
        orders.append(order)
    return boxes_t, masks_t, num_crowds, orders


@contextlib.contextmanager
def _recording_match(ref, record):
    """Wrap the ``match`` that multibox_loss.py imported, to observe (not alter) the
    positives it assigns per image inside the real loss call."""
    module = sys.modules[ref.layers.MultiBoxLoss.__module__]
    original = module.match

    def recording(pos_thresh, neg_thresh, truths, priors, labels, crowd_boxes, loc_t, conf_t, idx_t, idx, loc_data):
        out = original(pos_thresh, neg_thresh, truths, priors, labels, crowd_boxes, loc_t, conf_t, idx_t, idx, loc_data)
        record[idx] = {"positives": int((conf_t[idx] > 0).sum()),
                       "neutral": int((conf_t[idx] < 0).sum()),
                       "num_gt": int(truths.size(0)),
                       "num_crowd": 0 if crowd_boxes is None else int(crowd_boxes.size(0))}
        return out

    module.match = recording
    try:
        yield
    finally:
        module.match = original


def run_losses(ref, net, transform, seeds=LOSS_SEEDS):
    cfg = ref.cfg
    cfg.freeze_bn = True
    net.train()  # Yolact.train() calls freeze_bn() when cfg.freeze_bn: BN uses running stats
    bn_training = [m.training for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert not any(bn_training), "batch norm is not frozen"
    targets_list = [sw.seeded_targets(s, IMAGE_SIZE, IMAGE_SIZE) for s in seeds]
    images = [sw.seeded_image(s, IMAGE_SIZE, IMAGE_SIZE) for s in seeds]
    boxes_t, masks_t, num_crowds, orders = reference_training_targets(targets_list)
    criterion = ref.layers.MultiBoxLoss(
        num_classes=cfg.num_classes, pos_threshold=cfg.positive_iou_threshold,
        neg_threshold=cfg.negative_iou_threshold, negpos_ratio=cfg.ohem_negpos_ratio)
    with torch.no_grad():
        batch = _preprocess(ref, transform, images)
        preds = net(batch)
        torch.manual_seed(LOSS_TORCH_SEED)
        record = {}
        with _recording_match(ref, record):
            # MultiBoxLoss splits crowds off the lists it is given: pass copies.
            losses = criterion(net, preds, list(boxes_t), list(masks_t), list(num_crowds))
    positives = [record[i]["positives"] for i in range(len(seeds))]
    subsampled = any(p > MASK_SUBSAMPLE_LIMIT for p in positives)
    if subsampled:
        raise RuntimeError("positives %s exceed %d: the reference subsampled masks at random"
                           % (positives, MASK_SUBSAMPLE_LIMIT))
    net.eval()
    cfg.freeze_bn = False
    return {
        "image_seeds": list(seeds),
        "torch_seed": LOSS_TORCH_SEED,
        "freeze_bn": True,
        "num_crowds": num_crowds,
        "reference_object_order": orders,
        "num_objects": [int(len(t["classes"])) for t in targets_list],
        "image_sha256": [sw.array_digest(im) for im in images],
        "targets_masks_sha256": [sw.array_digest(t["masks"]) for t in targets_list],
        "targets": [{"boxes": t["boxes"].tolist(), "classes": t["classes"].tolist(),
                     "iscrowd": [bool(v) for v in t["iscrowd"]]} for t in targets_list],
        "num_positives": positives,
        "num_neutral": [record[i]["neutral"] for i in range(len(seeds))],
        "masks_to_train": int(cfg.masks_to_train),
        "random_subsampling": subsampled,
        "criterion": {
            "num_classes": int(cfg.num_classes),
            "pos_threshold": _f(cfg.positive_iou_threshold),
            "neg_threshold": _f(cfg.negative_iou_threshold),
            "negpos_ratio": _f(cfg.ohem_negpos_ratio),
            "crowd_iou_threshold": _f(cfg.crowd_iou_threshold),
        },
        "losses": {k: _f(v) for k, v in sorted(losses.items())},
    }


def _read_tsv_rows(path):
    with open(path, "r", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yolact-repo", required=True, help="checkout of dbolya/yolact")
    p.add_argument("--output", required=True, help="fixture folder (e.g. tests/fixtures/yolact)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--shared-keys", default=None,
                   help="folder of the shared checkpoint key TSVs (default: ../shared/reference/"
                        "checkpoint_keys next to the repository root)")
    p.add_argument("--key-lists-only", nargs="*", default=list(KEY_LIST_CONFIGS),
                   metavar="CONFIG",
                   help="configs of the reference whose key list alone is written (no outputs): "
                        "the other published checkpoints' layouts")
    args = p.parse_args(argv)
    # torch 2.x deprecation chatter about the reference's TorchScript use
    warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated.*")
    warnings.filterwarnings("ignore", message=r".*found in ScriptModule constants.*")

    ref = Reference(args.yolact_repo)
    transform = ref.fast_base_transform()
    os.makedirs(args.output, exist_ok=True)
    repo_root = os.path.abspath(os.path.join(_HERE, "..", "..", ".."))
    shared = args.shared_keys or os.path.join(repo_root, "..", "shared", "reference", "checkpoint_keys")
    commit = ref.commit()
    for config_name in args.key_lists_only:
        ref.config.set_cfg(config_name)
        keys_path = os.path.join(args.output, "%s_keys.tsv" % config_name)
        sw.write_key_spec(keys_path, ref.yolact.Yolact().state_dict())
        print("wrote %s" % keys_path)
    summaries = []
    for config_name in args.configs:
        t0 = time.time()
        net, cfg, spec = build_net(ref, config_name)
        keys_name = "%s_keys.tsv" % config_name
        keys_path = os.path.join(args.output, keys_name)
        sw.write_key_spec(keys_path, net.state_dict())
        assert sw.read_key_spec(keys_path) == spec
        shared_match = None
        if config_name in SHARED_KEY_SPECS:
            shared_path = os.path.join(shared, SHARED_KEY_SPECS[config_name])
            if os.path.isfile(shared_path):
                shared_match = _read_tsv_rows(shared_path) == _read_tsv_rows(keys_path)
                if not shared_match:
                    raise SystemExit("%s differs from %s" % (keys_path, shared_path))
        inference = run_inference(ref, net, transform)
        losses = run_losses(ref, net, transform)
        out = {
            "reference": "dbolya/yolact",
            "reference_commit": commit,
            "torch_version": torch.__version__,
            "config": config_name,
            "cfg_name": cfg.name,
            "key_spec": keys_name,
            "key_spec_equals_shared": (SHARED_KEY_SPECS[config_name] if shared_match else None),
            "num_keys": len(spec),
            "weights": "seeded_weights.seeded_state_dict(read_key_spec(key_spec))",
            "weights_sha256": net.weights_digest,
            "use_jit": ref.use_jit,
            "runtime_patches": list(ref.patches),
            "traditional_nms": "available" if ref.has_cython else "skipped (no cython/pyximport)",
            "seeds": {"inference_image": INFERENCE_SEED, "loss_images": list(LOSS_SEEDS),
                      "loss_targets": list(LOSS_SEEDS), "torch_manual_seed_before_loss": LOSS_TORCH_SEED},
            "inference": inference,
            "loss": losses,
        }
        json_path = os.path.join(args.output, "%s_reference.json" % config_name)
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1, sort_keys=False)
            f.write("\n")
        dets = inference["detections"]
        s = {
            "config": config_name,
            "seconds": round(time.time() - t0, 1),
            "keys": len(spec),
            "shared_keys_equal": shared_match,
            "detections": len(dets),
            "classes": len({d["class"] for d in dets}),
            "score": (min(d["score"] for d in dets), max(d["score"] for d in dets)),
            "mask_area": (min(d["mask_area"] for d in dets), max(d["mask_area"] for d in dets)),
            "empty_masks": sum(d["mask_area"] == 0 for d in dets),
            "coeff_abs_mean": inference["coeff_abs_mean"],
            "coeff_frac_saturated": inference["coeff_frac_saturated"],
            "proto": (inference["proto_shape"], inference["proto_sum"]),
            "positives": losses["num_positives"],
            "losses": losses["losses"],
            "json_bytes": os.path.getsize(json_path),
        }
        if "mask_score" in dets[0]:
            s["mask_score"] = (min(d["mask_score"] for d in dets), max(d["mask_score"] for d in dets))
        summaries.append(s)
        del net
    print("reference commit %s, torch %s, use_jit=%s" % (commit, torch.__version__, ref.use_jit))
    print("runtime patches: " + "; ".join(ref.patches))
    for s in summaries:
        print("== %s (%.1fs)" % (s["config"], s["seconds"]))
        for k, v in s.items():
            if k not in ("config", "seconds"):
                print("  %-20s %s" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main())
