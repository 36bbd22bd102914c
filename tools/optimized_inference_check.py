#!/usr/bin/env python
"""COCO AP of a model as rtinst's ``Predictor`` runs it as built and optimised for inference
(``TEST.OPTIMIZE_FOR_INFERENCE``), on one dataset, and how far the two paths' detections differ.

    python tools/optimized_inference_check.py --config-file configs/FCOS/MNV2_FPN_shapes.yaml \\
        --json out.json MODEL.WEIGHTS model.pth

The two models are ``Predictor(cfg).model`` with the key False and True (on CPU: the
``Predictor`` optimises only there), fed the same images by the dataset's test loader and scored
by rtinst's ``COCOEvaluator``; their forward passes are timed, and the BatchNorms left and the
Winograd convolutions (made, used) counted. Image by image, each as-built instance is paired
with the optimised instance of the same class, score within ``--score-tol`` and the closest box;
reported: the largest score, mask-score and box (px) differences of the pairs, their smallest
mask IoU, and the instances of either path left unpaired that score above ``--unpaired-score``.
"""
import argparse
import json
import sys
import time

import torch

from rtinst.engine import Predictor, Trainer, load_config
from rtinst.evaluation import COCOEvaluator
from rtinst.export import pair_instances

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--dataset", help="a registered image dataset (default: DATASETS.TEST[0])")
    parser.add_argument("--score-tol", type=float, default=0.05,
                        help="largest score difference of a pair")
    parser.add_argument("--unpaired-score", type=float, default=0.3,
                        help="unpaired instances scoring above this are counted")
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return parser.parse_args(argv)


def compare(built, fast, args, totals):
    """Adds one image's differences between the two paths' ``Instances`` to ``totals``."""
    pairs = pair_instances(built, fast, args.score_tol)  # the export parity's pairing rule
    i = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    j = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    totals["pairs"] += len(pairs)
    for side, instances, index in ((0, built, i), (1, fast, j)):
        unpaired = torch.ones(len(instances), dtype=torch.bool)
        unpaired[index] = False
        totals["detections"][side] += len(instances)
        totals["unpaired_above"][side] += int((instances.scores[unpaired]
                                               > args.unpaired_score).sum())
    if not pairs:
        return
    differences = {
        "score": built.scores[i] - fast.scores[j],
        "box_px": built.pred_boxes.tensor[i] - fast.pred_boxes.tensor[j],
    }
    if built.has("mask_scores"):
        differences["mask_score"] = built.mask_scores[i] - fast.mask_scores[j]
    for name, values in differences.items():
        key = f"max_{name}_diff"
        totals[key] = max(totals.get(key, 0.0), values.abs().max().item())
    if built.has("pred_masks"):
        a, b = built.pred_masks[i].flatten(1), fast.pred_masks[j].flatten(1)
        union = (a | b).sum(1)
        iou = torch.where(union > 0, (a & b).sum(1) / union.clamp(min=1), 1.0)
        if iou.min().item() < totals.get("min_mask_iou", 1.0):
            totals["min_mask_iou"] = iou.min().item()
            totals["min_mask_iou_union_px"] = int(union[iou.argmin()])
        totals["pairs_mask_iou_below_0.9"] = (totals.get("pairs_mask_iou_below_0.9", 0)
                                              + int((iou < 0.9).sum()))


def evaluate(args):
    """The report: AP of both paths and their detections' differences."""
    cfg = load_config(args.config_file, args.opts)
    dataset = args.dataset or cfg.DATASETS.TEST[0]
    models = []
    for optimize in (False, True):
        cfg.defrost()
        cfg.TEST.OPTIMIZE_FOR_INFERENCE = optimize
        predictor = Predictor(cfg)
        if predictor.optimized != optimize:
            sys.exit(f"MODEL.DEVICE is {cfg.MODEL.DEVICE}: the Predictor optimises on CPU only")
        models.append(predictor.model)
    evaluators = [COCOEvaluator(dataset) for _ in models]
    for evaluator in evaluators:
        evaluator.reset()
    totals = {"images": 0, "detections": [0, 0], "pairs": 0, "unpaired_above": [0, 0]}
    seconds = [0.0, 0.0]
    with torch.no_grad():
        for inputs in Trainer.build_test_loader(cfg, dataset):
            outputs = []
            for index, model in enumerate(models):
                start = time.perf_counter()
                outputs.append(model(inputs))
                seconds[index] += time.perf_counter() - start
            for evaluator, output in zip(evaluators, outputs):
                evaluator.process(inputs, output)
            for built, fast in zip(*outputs):
                compare(built["instances"], fast["instances"], args, totals)
            totals["images"] += len(inputs)
            if totals["images"] % 25 == 0:
                print(f"{totals['images']} images, {seconds[0]:.0f} s as built, "
                      f"{seconds[1]:.0f} s optimised", file=sys.stderr, flush=True)
    ap = {}
    for path, evaluator in zip(("as_built", "optimized"), evaluators):
        results = evaluator.evaluate()
        ap[path] = {task: {m: round(results[task][m], 4) for m in METRICS}
                    for task in results}
    ap["max_abs_difference"] = {
        task: round(max(abs(ap["as_built"][task][m] - ap["optimized"][task][m])
                        for m in METRICS), 4)
        for task in ap["as_built"]}
    norms = [sum("BatchNorm" in type(m).__name__ for m in model.modules()) for model in models]
    winograd = [m.winograd_kernel for m in models[1].modules() if hasattr(m, "winograd_kernel")]
    optimized = {"batch_norms_as_built": norms[0], "batch_norms_optimized": norms[1],
                 "winograd_convs": len(winograd),
                 "winograd_convs_used": sum(k is not None for k in winograd)}
    return {"config": args.config_file, "opts": args.opts, "dataset": dataset,
            "threads": torch.get_num_threads(), "score_tol": args.score_tol,
            "unpaired_score": args.unpaired_score, "optimized_model": optimized, "ap": ap,
            "detections": totals,
            "model_seconds": {"as_built": round(seconds[0], 1), "optimized": round(seconds[1], 1)}}


def main(args):
    report = evaluate(args)
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(parse_args())
