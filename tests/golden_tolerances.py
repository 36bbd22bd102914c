"""How golden outputs are compared: as floating point allows on any x86-64 CPU, and no looser.

oneDNN, PyTorch and the BLAS pick their kernels by instruction set (SSE4.1, AVX2, AVX-512), so
the same code on the same weights rounds differently from CPU to CPU. The tolerances below are a
margin over the largest deviation measured between instruction sets
(``tools/reference/record_ours.py``; figures in ``benchmarks/golden_isa_noise_*.json`` and
``docs/testing.md``), and stay well under what a real change moves (half a pixel of box, a 1%
loss weight, a dropped bias: ``docs/testing.md`` lists the breaks each test catches).

Detections are compared as sets: each detection of one side is paired with one of the other
(same class, by Hungarian matching on box and score distance), since two scores that tie
within rounding may come out in either order. Two kinds of pairing failure are rounding too and
are allowed, a few at most:

* a *boundary* detection: kept by one side only, its score within ``score`` of the weakest kept
  score (the top-k or threshold cut decided by rounding);
* an *NMS tie*: two overlapping candidates of one class whose scores tie within ``score``, of
  which each side kept a different one.
"""
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou


@dataclass(frozen=True)
class Tolerances:
    box_px: float  # largest |coordinate difference| of paired boxes, pixels
    score: float  # largest |score difference| of paired detections (and the tie window)
    mask_iou: float  # smallest IoU of paired masks
    mean_mask_iou: float  # smallest mean IoU over the paired masks of one picture
    loss_rtol: float  # largest relative difference of a loss value
    grad_rtol: float  # gradient norms: |a - b| <= grad_rtol * |b| + grad_atol
    grad_atol: float  # + grad_atol_share * the model's largest gradient norm
    grad_atol_share: float = 0.0
    max_unpaired: int = 2  # boundary detections + NMS ties allowed per picture



# The largest deviations measured from the frozen fixtures, over the SSE4.1 cap on an AVX2 CPU
# (benchmarks/golden_isa_noise_2026-12-07.json) and the AVX-512 run reported in issue 32: for
# each quantity the tolerance is a margin of 2.5x or more over them.
# The reference fixtures (tests/test_reference_golden.py): R-50 / VoVNet models at 512 x 640.
# Measured: boxes 4.9e-4 px, scores 2e-6, mask IoU 0.962 (BlendMask-RT at threshold 0: 100
# low-score masks), mean mask IoU 0.9977, losses 1e-6, gradient norms 2.8e-3 relative beyond
# 1e-6 (BlendMask-RT; FCOS P7 2.8e-3 on AVX-512): the absolute 1e-6 covers the conv biases
# before a BatchNorm, whose gradients are 0 but for rounding (~1e-8).
REFERENCE = Tolerances(box_px=5e-3, score=1e-4, mask_iou=0.9, mean_mask_iou=0.99,
                       loss_rtol=1e-4, grad_rtol=1e-2, grad_atol=1e-6)
# The method golden outputs (tests/test_golden_outputs.py): tiny models from scratch at
# 150 x 210 whose gradients (through training-mode BatchNorms on a two-image batch) amplify
# rounding most. Measured: boxes 3.8e-3 px, scores 1e-4, mask scores 3.4e-4, mask IoU 0.9998,
# losses 4.9e-5, gradient norms 6.6e-3 relative (CenterMask), and BlitzMask's stem BatchNorm
# weight 4.2% off (2.9 of 69.5, where its largest gradient norm is 7.5e3: 3.9e-4 of it).
METHODS = Tolerances(box_px=2e-2, score=1e-3, mask_iou=0.9, mean_mask_iou=0.99,
                     loss_rtol=5e-4, grad_rtol=2e-2, grad_atol=0.0, grad_atol_share=1e-3)
# The YOLACT reference fixtures (tests/test_yolact_reference.py): at 550 x 550.
# Measured: boxes 9.2e-5 px, scores 2.6e-6, mask scores 1.2e-6, mask IoU 1.0, losses 4.1e-7, and
# one NMS tie of YOLACT++ (two candidates 1.8e-7 apart) kept the other way on AVX2.
YOLACT = Tolerances(box_px=1e-3, score=1e-4, mask_iou=0.95, mean_mask_iou=0.99,
                    loss_rtol=1e-4, grad_rtol=1e-2, grad_atol=1e-6)


def _box_iou(a, b) -> float:
    return float(box_iou(torch.tensor([a], dtype=torch.float64),
                         torch.tensor([b], dtype=torch.float64)))


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def pair_detections(ours, theirs, tol: Tolerances):
    """Hungarian pairing of two lists of detections ``{"box", "score", "class"[, "mask",
    "mask_score"]}``; returns ``(pairs, only_ours, only_theirs)`` as index lists. Pairs are of
    one class and within 100x the box and score tolerances (a farther partner is no partner)."""
    from scipy.optimize import linear_sum_assignment

    if not ours or not theirs:
        return [], list(range(len(ours))), list(range(len(theirs)))
    boxes_o = np.array([d["box"] for d in ours], dtype=np.float64)
    boxes_t = np.array([d["box"] for d in theirs], dtype=np.float64)
    box_d = np.abs(boxes_o[:, None] - boxes_t[None]).max(axis=2) / tol.box_px
    score_d = np.abs(np.array([d["score"] for d in ours])[:, None]
                     - np.array([d["score"] for d in theirs])[None]) / tol.score
    same_class = (np.array([d["class"] for d in ours])[:, None]
                  == np.array([d["class"] for d in theirs])[None])
    cost = np.where(same_class & (box_d <= 100) & (score_d <= 100), box_d + score_d, 1e9)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(i, j) for i, j in zip(rows, cols) if cost[i, j] < 1e9]
    paired_o, paired_t = {i for i, _ in pairs}, {j for _, j in pairs}
    return (pairs, [i for i in range(len(ours)) if i not in paired_o],
            [j for j in range(len(theirs)) if j not in paired_t])


def detection_deviations(ours, theirs, tol: Tolerances):
    """The largest deviations between two detection lists, and the unpaired detections
    explained as rounding (boundary, NMS tie) or not (``unexplained``)."""
    pairs, only_o, only_t = pair_detections(ours, theirs, tol)
    ties = []
    for i in list(only_o):  # an NMS tie: one unpaired detection on each side, overlapping
        for j in only_t:
            o, t = ours[i], theirs[j]
            if (o["class"] == t["class"] and abs(o["score"] - t["score"]) <= tol.score
                    and _box_iou(o["box"], t["box"]) > 0.5):
                ties.append((i, j))
                only_o.remove(i)
                only_t.remove(j)
                break
    weakest = min([d["score"] for d in ours + theirs], default=0.0)
    boundary = sum(d["score"] - weakest <= tol.score
                   for d in [ours[i] for i in only_o] + [theirs[j] for j in only_t])
    unexplained = len(only_o) + len(only_t) - boundary
    deviation = {"detections": [len(ours), len(theirs)], "pairs": len(pairs),
                 "nms_ties": len(ties), "boundary": boundary, "unexplained": unexplained,
                 "box_px": 0.0, "score": 0.0, "mask_score": 0.0, "mask_iou": 1.0,
                 "mean_mask_iou": 1.0}
    ious = []
    for i, j in pairs:
        o, t = ours[i], theirs[j]
        deviation["box_px"] = max(deviation["box_px"],
                                  float(np.abs(np.subtract(o["box"], t["box"])).max()))
        deviation["score"] = max(deviation["score"], abs(o["score"] - t["score"]))
        if "mask_score" in t:
            deviation["mask_score"] = max(deviation["mask_score"],
                                          abs(o["mask_score"] - t["mask_score"]))
        if "mask" in t:
            ious.append(mask_iou(o["mask"], t["mask"]))
    if ious:
        deviation["mask_iou"], deviation["mean_mask_iou"] = min(ious), float(np.mean(ious))
    return deviation


def detection_problems(deviation, tol: Tolerances):
    """What in ``detection_deviations``'s result exceeds ``tol`` (empty: equal)."""
    problems = []
    if deviation["unexplained"]:
        problems.append(f"{deviation['unexplained']} detections without a partner "
                        f"({deviation['detections'][0]} ours, {deviation['detections'][1]} "
                        f"expected)")
    if deviation["boundary"] + deviation["nms_ties"] > tol.max_unpaired:
        problems.append(f"{deviation['boundary']} boundary detections and "
                        f"{deviation['nms_ties']} NMS ties (<= {tol.max_unpaired})")
    for key, bound in (("box_px", tol.box_px), ("score", tol.score),
                       ("mask_score", tol.score)):
        if deviation[key] > bound:
            problems.append(f"{key} differs by {deviation[key]:.3g} (> {bound})")
    for key, bound in (("mask_iou", tol.mask_iou), ("mean_mask_iou", tol.mean_mask_iou)):
        if deviation[key] < bound:
            problems.append(f"{key} {deviation[key]:.4f} (< {bound})")
    return problems


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


def loss_problems(ours: dict, theirs: dict, tol: Tolerances):
    if sorted(ours) != sorted(theirs):
        return [f"losses {sorted(ours)}, expected {sorted(theirs)}"]
    return [f"{k}: {ours[k]} vs {v}" for k, v in theirs.items()
            if relative(ours[k], v) > tol.loss_rtol]


def _gradient_slack(theirs: dict, tol: Tolerances) -> float:
    """The absolute part of the gradient-norm tolerance. A norm that is small by cancellation
    (e.g. a BatchNorm weight's sum of dy * x_hat) carries the rounding of the large terms that
    cancelled, which scale with the gradients flowing through the model, not with its own norm."""
    return tol.grad_atol + tol.grad_atol_share * max(map(abs, theirs.values()), default=0.0)


def gradient_problems(ours: dict, theirs: dict, tol: Tolerances):
    if sorted(ours) != sorted(theirs):
        missing, extra = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        return [f"gradients missing {missing[:5]}, unexpected {extra[:5]}"]
    slack = _gradient_slack(theirs, tol)
    return [f"{k}: {ours[k]} vs {v}" for k, v in theirs.items()
            if abs(ours[k] - v) > slack + tol.grad_rtol * abs(v)]


def gradient_rtol_needed(ours: dict, theirs: dict, tol: Tolerances) -> float:
    """The smallest ``grad_rtol`` with which ``gradient_problems`` passes (others as ``tol``)."""
    slack = _gradient_slack(theirs, tol)
    return max((max(abs(ours[k] - v) - slack, 0.0) / max(abs(v), 1e-12)
                for k, v in theirs.items() if k in ours), default=0.0)


def records_from_rle(detections):
    """Fixture detection records with their ``mask_rle`` decoded to a boolean ``mask``."""
    import pycocotools.mask as mask_util

    records = []
    for d in detections:
        record = {k: v for k, v in d.items() if k != "mask_rle"}
        if "mask_rle" in d:
            rle = {"size": d["mask_rle"]["size"], "counts": d["mask_rle"]["counts"].encode()}
            record["mask"] = mask_util.decode(rle).astype(bool)
        records.append(record)
    return records


def records_from_outputs(outputs: dict, image_size):
    """Detection records of a method golden output (``tests/golden_outputs.py``: tensors or
    lists of ``pred_boxes``, ``scores``, ``pred_classes``[, ``mask_scores``,
    ``pred_masks_bits``])."""
    boxes = np.asarray(outputs["pred_boxes"], dtype=np.float64).reshape(-1, 4)
    masks = None
    if "pred_masks_bits" in outputs:
        bits = np.unpackbits(np.asarray(outputs["pred_masks_bits"], dtype=np.uint8))
        masks = bits[:len(boxes) * image_size[0] * image_size[1]].astype(bool).reshape(
            len(boxes), *image_size)
    records = []
    for i, box in enumerate(boxes):
        record = {"box": box.tolist(), "score": float(np.asarray(outputs["scores"])[i]),
                  "class": int(np.asarray(outputs["pred_classes"])[i])}
        if "mask_scores" in outputs:
            record["mask_score"] = float(np.asarray(outputs["mask_scores"])[i])
        if masks is not None:
            record["mask"] = masks[i]
        records.append(record)
    return records
