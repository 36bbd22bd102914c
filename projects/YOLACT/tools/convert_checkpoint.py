#!/usr/bin/env python
"""Converts a dbolya/yolact checkpoint (``yolact_base_54_800000.pth``, ...) into ours, read with
``torch.load(weights_only=True)`` (no code in the file runs), and writes it as a Detectron2
checkpoint ({"model": state_dict}). Loading the reference's file directly as ``MODEL.WEIGHTS``
converts it the same way; this tool writes the result once and prints what became of every key.

Example:
  python projects/YOLACT/tools/convert_checkpoint.py yolact_base_54_800000.pth \\
      yolact_R_101_550_converted.pth
"""
import argparse
import sys

import torch

from rtinst.errors import CheckpointError
from yolact import convert_reference_state_dict, is_reference_state_dict


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="the reference's .pth state dict")
    parser.add_argument("target", help="the converted checkpoint to write")
    parser.add_argument("--verbose", action="store_true", help="list every renamed key")
    args = parser.parse_args(argv)
    try:
        state = torch.load(args.source, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 (unpickling refusals, truncated files, ...)
        sys.exit(f"convert_checkpoint.py: cannot read {args.source}: {e}")
    if not isinstance(state, dict) or not is_reference_state_dict(state):
        sys.exit(f"convert_checkpoint.py: {args.source} is not a dbolya/yolact state dict "
                 "(no prediction_layers.0.conf_layer.weight)")
    try:
        converted, report = convert_reference_state_dict(state)
    except CheckpointError as e:
        sys.exit(f"convert_checkpoint.py: {args.source}: {e}")
    if args.verbose:
        for old, new in report.renamed.items():
            print(f"{old} -> {new}")
    torch.save({"model": converted, "__author__": "dbolya/yolact, converted by rtinst"},
               args.target)
    print(f"{args.target}: {report.summary()}")


if __name__ == "__main__":
    main()
