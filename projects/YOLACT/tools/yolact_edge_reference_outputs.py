#!/usr/bin/env python
"""Run the original YolactEdge (WisconsinAIVision/yolact_edge) on CPU with seeded weights on a
keyframe and a non-keyframe and freeze what it outputs into a small JSON fixture.

Usage::

    python projects/YOLACT/tools/yolact_edge_reference_outputs.py \
        --yolact-edge-repo /tmp/yolact_edge_ref --output tests/fixtures/yolact

The checkout (the folder holding the ``yolact_edge`` package) is put on ``sys.path`` and not
modified: what cannot run here (TensorRT, the Cython NMS, CUDA calls) is patched at runtime
(``Reference.patches``). The TensorRT conversions are off (``cfg.torch2trt_* = False``, the
reference's ``--disable_tensorrt`` path); TorchScript stays on as on a single-GPU machine.

The frames: one COCO photo (``--image``), frame 1 its crop without the last ``SHIFT`` pixels,
frame 2 the crop without the first ones (the content moved by -SHIFT px), both through the
reference's ``FastBaseTransform`` (550 x 550). Frame 1 runs as a keyframe and frame 2 as a
non-keyframe with the keyframe's ``feats`` / ``lateral``, as its eval.py does for videos.
Weights: ``seeded_weights.seeded_state_dict(spec, YOLACT_EDGE_RULE)``. Written:
``<output>/<config>_keys.tsv`` and ``<output>/yolact_edge_<config>_reference.json``.
This script is a developer tool; the test suite never runs it.
"""
import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import types
import warnings

import cv2
import numpy as np
import torch

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
import seeded_weights as sw  # noqa: E402
from reference_outputs import _patched, _rle  # noqa: E402

CONFIG = "yolact_edge_vid_resnet50_config"
IMAGE = "/work/shared/data/coco_train2017_mini/train2017/000000000790.jpg"
SHIFT = (6, 4)  # (x, y) pixels between the two frames
FLOW_SAMPLES = ((0, 0, 0), (7, 3, 11), (100, 17, 17), (255, 34, 5))  # (channel, y, x)


class Reference:
    """The imported reference modules, plus the runtime patches they need on CPU."""

    def __init__(self, repo):
        self.repo = os.path.abspath(repo)
        self.patches = []
        if not os.path.isfile(os.path.join(self.repo, "yolact_edge", "yolact.py")):
            raise SystemExit("not a yolact_edge checkout: %s" % self.repo)
        if any(k == "yolact_edge" or k.startswith("yolact_edge.") for k in sys.modules):
            raise SystemExit("yolact_edge already imported; run this in a fresh interpreter")
        sys.path.insert(0, self.repo)
        sys.dont_write_bytecode = True  # leave the checkout untouched (no __pycache__)

        # detection.py compiles utils/cython_nms.pyx with pyximport at import; only its
        # traditional NMS uses it, and Fast NMS runs here
        fake = types.ModuleType("pyximport")
        fake.install = lambda *a, **k: None
        sys.modules["pyximport"] = fake
        cnms = types.ModuleType("yolact_edge.utils.cython_nms")

        def nms(*args, **kwargs):
            raise RuntimeError("the Cython NMS is not built here; use Fast NMS")

        cnms.nms = nms
        sys.modules["yolact_edge.utils.cython_nms"] = cnms
        self.patches.append("pyximport and yolact_edge.utils.cython_nms: stand-ins (Fast NMS)")
        with contextlib.ExitStack() as stack:
            if not torch.cuda.is_available():
                stack.enter_context(_patched(torch.cuda, "current_device", lambda: 0))
                self.patches.append("torch.cuda.current_device -> 0 while importing yolact.py")
            self.yolact = importlib.import_module("yolact_edge.yolact")
        self.config = importlib.import_module("yolact_edge.data.config")
        self.output_utils = importlib.import_module("yolact_edge.layers.output_utils")
        self.augmentations = importlib.import_module("yolact_edge.utils.augmentations")
        self.warp_utils = importlib.import_module("yolact_edge.layers.warp_utils")
        for mod in (self.yolact, self.config, self.output_utils, self.augmentations):
            if not os.path.abspath(mod.__file__).startswith(self.repo + os.sep):
                raise SystemExit("imported %s from %s" % (mod.__name__, mod.__file__))
        self.use_jit = bool(self.yolact.use_jit) and bool(self.warp_utils.use_jit)

    @property
    def cfg(self):
        return self.config.cfg

    def commit(self, mirror):
        try:
            return subprocess.check_output(["git", "--git-dir", mirror, "rev-parse", "HEAD"],
                                           text=True).strip()
        except Exception:  # pragma: no cover - no mirror
            return "unknown"

    def fast_base_transform(self):
        # its __init__ moves mean/std to the GPU (.cuda()); forward moves them to the image
        with _patched(torch.Tensor, "cuda", lambda self, *a, **k: self):
            t = self.augmentations.FastBaseTransform()
        self.patches.append("torch.Tensor.cuda -> identity while constructing FastBaseTransform")
        return t


def build_net(ref, config_name):
    """As eval.py: ``Yolact(training=False)``, the weights loaded with the partial backbone
    created after them (``load_weights``), then ``eval()`` (which the partial backbone needs)."""
    ref.config.set_cfg(config_name)
    cfg = ref.cfg
    for key in list(cfg.__dict__):
        if key.startswith("torch2trt_") and isinstance(getattr(cfg, key), bool):
            setattr(cfg, key, False)
    cfg.mask_proto_debug = False
    torch.manual_seed(0)  # only the constructor's own (overwritten) init
    net = ref.yolact.Yolact(training=False)
    state = net.state_dict()
    spec = [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in state.items()]
    weights = sw.seeded_state_dict(spec, sw.YOLACT_EDGE_RULE)
    net.load_state_dict(weights, strict=True)
    net.create_partial_backbone()
    net.eval()
    assert not any(m.training for m in net.modules())
    net.detect.use_fast_nms = True
    net.detect.use_cross_class_nms = False
    return net, spec, sw.state_dict_digest(weights)


def frames(path, shift=SHIFT):
    """Two BGR uint8 frames of the photo: without its last / its first ``shift`` pixels."""
    image = cv2.imread(path)
    if image is None:
        raise SystemExit("cannot read %s" % path)
    dx, dy = shift
    h, w = image.shape[:2]
    return image, np.ascontiguousarray(image[:h - dy, :w - dx]), \
        np.ascontiguousarray(image[dy:, dx:])


def detections(ref, net_outs, height, width):
    dets = net_outs["pred_outs"]
    if dets[0] is None:
        return []
    classes, scores, boxes_int, masks = ref.output_utils.postprocess(
        dets, width, height, crop_masks=True, score_threshold=0)
    sanitized = dets[0]["box"]  # sanitized in place by postprocess, before .long()
    masks = masks.numpy().astype(np.uint8)
    return [{"class": int(classes[i]), "score": float(scores[i]),
             "box": [float(v) for v in sanitized[i]],
             "box_int": [int(v) for v in boxes_int[i]],
             "mask_area": int(masks[i].sum()), "mask_rle": _rle(masks[i])}
            for i in range(len(classes))]


def _stats(t):
    t = t.double()
    return {"mean": float(t.mean()), "std": float(t.std()), "abs_mean": float(t.abs().mean()),
            "min": float(t.min()), "max": float(t.max())}


def flow_record(prediction, stride):
    flow, scale, bias = (t[0] for t in prediction)
    samples = [[c, y, x] for c, y, x in FLOW_SAMPLES if y < scale.shape[1] and x < scale.shape[2]]
    return {"stride": stride, "shape": list(flow.shape),
            "flow": flow.tolist(), "flow_stats": _stats(flow),
            "scale_shape": list(scale.shape), "scale_stats": _stats(scale),
            "bias_stats": _stats(bias), "samples_cyx": samples,
            "scale_samples": [float(scale[c, y, x]) for c, y, x in samples],
            "bias_samples": [float(bias[c, y, x]) for c, y, x in samples]}


def run(ref, net, transform, frame1, frame2):
    height, width = frame1.shape[:2]
    moving = {"conf_hist": []}
    batch = [transform(torch.from_numpy(f).float()[None]) for f in (frame1, frame2)]
    with torch.no_grad():
        key = net(batch[0], extras={"backbone": "full", "interrupt": False,
                                    "keep_statistics": True, "moving_statistics": moving})
        moving["feats"] = key["feats"]
        moving["lateral"] = key["lateral"]
        key_dets = detections(ref, key, height, width)
        other = net(batch[1], extras={"backbone": "partial", "interrupt": False,
                                      "keep_statistics": False, "moving_statistics": moving})
        other_dets = detections(ref, other, height, width)
    flows = other["preds_flow"]  # P4P5: the stride-16 and stride-32 predictions
    return {
        "keyframe": {"detections": key_dets,
                     "input_sha256": sw.array_digest(batch[0].numpy())},
        "non_keyframe": {"detections": other_dets,
                         "input_sha256": sw.array_digest(batch[1].numpy()),
                         "flows": [flow_record(flows[0], 16), flow_record(flows[1], 32)]},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--yolact-edge-repo", required=True,
                   help="folder holding the yolact_edge package (an export of the reference)")
    p.add_argument("--mirror", default="/work/.mirror/WisconsinAIVision+yolact_edge/repo",
                   help="git directory the export came from (for its commit)")
    p.add_argument("--output", required=True, help="fixture folder (tests/fixtures/yolact)")
    p.add_argument("--image", default=IMAGE)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated.*")
    warnings.filterwarnings("ignore", message=r".*found in ScriptModule constants.*")

    ref = Reference(args.yolact_edge_repo)
    transform = ref.fast_base_transform()
    net, spec, digest = build_net(ref, CONFIG)
    os.makedirs(args.output, exist_ok=True)
    keys_name = "%s_keys.tsv" % CONFIG
    keys_path = os.path.join(args.output, keys_name)
    sw.write_key_spec(keys_path, {k: torch.empty(s, dtype=getattr(torch, d)) for k, s, d in spec})
    assert sw.read_key_spec(keys_path) == spec
    image, frame1, frame2 = frames(args.image)
    outputs = run(ref, net, transform, frame1, frame2)
    cfg = ref.cfg
    out = {
        "reference": "WisconsinAIVision/yolact_edge",
        "reference_commit": ref.commit(args.mirror),
        "torch_version": torch.__version__,
        "config": CONFIG,
        "cfg_name": cfg.name,
        "num_classes": int(cfg.num_classes),
        "flow": {k: getattr(cfg.flow, k) for k in (
            "warp_mode", "model", "warp_layers", "flow_layer", "use_spa", "use_normalized_spa",
            "use_scale_factor", "use_scale_bias", "reduce_channels", "encode_channels",
            "encode_layers", "use_shuffle_cat")},
        "key_spec": keys_name,
        "num_keys": len(spec),
        "weights": "seeded_weights.seeded_state_dict(read_key_spec(key_spec), YOLACT_EDGE_RULE)",
        "weights_sha256": digest,
        "use_jit": ref.use_jit,
        "runtime_patches": list(ref.patches),
        "fast_nms": True,
        "cross_class_nms": False,
        "image": os.path.basename(args.image),
        "image_sha256": sw.array_digest(image),
        "shift_xy": list(SHIFT),
        "frames": "frame 1 = image[:h - dy, :w - dx], frame 2 = image[dy:, dx:] (BGR)",
        "frame_size": list(frame1.shape[:2]),
        "preprocess": "utils.augmentations.FastBaseTransform on a [1, H, W, 3] float BGR tensor "
                      "(bilinear resize to 550 x 550, (x - MEANS) / STD, BGR -> RGB)",
        **outputs,
    }
    json_path = os.path.join(args.output, "yolact_edge_%s_reference.json" % CONFIG)
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=None, separators=(",", ":"))
        f.write("\n")
    print("reference %s, torch %s, use_jit=%s" % (out["reference_commit"], torch.__version__,
                                                   ref.use_jit))
    print("runtime patches: " + "; ".join(ref.patches))
    for name in ("keyframe", "non_keyframe"):
        dets = out[name]["detections"]
        print("%s: %d detections, classes %s, scores %s, areas %s" % (
            name, len(dets), sorted({d["class"] for d in dets}),
            [round(d["score"], 3) for d in dets][:8], [d["mask_area"] for d in dets][:8]))
    for fl in out["non_keyframe"]["flows"]:
        print("stride %d flow %s scale %s bias %s" % (fl["stride"], fl["flow_stats"],
                                                      fl["scale_stats"], fl["bias_stats"]))
    print("wrote %s (%d bytes), %s" % (json_path, os.path.getsize(json_path), keys_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
