#!/usr/bin/env python
"""The end-point error of a YolactEdge model's flow on held-out still images moved by its "flow"
stage's random affine motion (``MODEL.YOLACT_EDGE.FLOW_MAX_*``), against a zero flow's, as JSON.

Example (the flow-pretrained shapes model, on shapes_val):
  python projects/YOLACT/tools/flow_epe.py \\
      --config-file configs/YolactEdge/MNv2_shapes_video.yaml \\
      --weights output/yolactedge/flow/model_final.pth --dataset shapes_val --images 64 \\
      --json benchmarks/yolactedge_flow_epe.json
"""
import argparse
import json
import statistics

import torch
from detectron2.data import DatasetCatalog
from detectron2.data import detection_utils as utils
from detectron2.modeling import build_model

from rtinst.benchmark.machine import git_commit, machine_info
from rtinst.engine import load_config
from rtinst.engine.predictor import load_weights
from yolact.flow_pretraining import held_out_end_point_errors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--dataset", default="shapes_val")
    parser.add_argument("--images", type=int, default=64, help="the dataset's first N images")
    parser.add_argument("--seeds", type=int, default=4, help="motions drawn per image: seeds")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides")
    args = parser.parse_args(argv)
    cfg = load_config(args.config_file, ["MODEL.DEVICE", "cpu", *args.opts])
    model = build_model(cfg).eval()
    load_weights(model, args.weights)
    records = DatasetCatalog.get(args.dataset)[:args.images]
    images = torch.stack([
        model.resize_and_normalize(torch.as_tensor(
            utils.read_image(r["file_name"], format=cfg.INPUT.FORMAT).transpose(2, 0, 1).copy()))
        for r in records])
    runs = [held_out_end_point_errors(model, images, seed) for seed in range(args.seeds)]
    result = {
        "what": "end-point error (pixels of the network input) of the stride-16 flow on "
                "held-out images moved by the flow stage's random affine motion, vs zero flow",
        "config": args.config_file, "weights": args.weights, "opts": args.opts,
        "dataset": args.dataset, "images": len(records), "seeds": args.seeds,
        "input_size": model.input_size, "motion": dict(zip(
            ("max_rotation_deg", "max_scale", "max_translation"), model.flow_motion)),
        "flow_epe_px": statistics.mean(r["flow_epe_px"] for r in runs),
        "zero_flow_epe_px": statistics.mean(r["zero_flow_epe_px"] for r in runs),
        "per_seed": runs, "commit": git_commit(), "machine": machine_info(),
    }
    print(json.dumps({k: result[k] for k in ("flow_epe_px", "zero_flow_epe_px")}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
