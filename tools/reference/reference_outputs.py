#!/usr/bin/env python
"""Run a reference implementation (AdelaiDet or centermask2) on CPU with name-seeded weights and
freeze what it computes into a small JSON fixture for ``tests/test_reference_golden.py``.

    python tools/reference/reference_outputs.py --reference adelaidet --repo /path/AdelaiDet
    python tools/reference/reference_outputs.py --reference centermask2 --repo /path/centermask2

The checkout is put on ``sys.path`` and not modified (AdelaiDet's compiled ``adet._C`` and, if
absent, scikit-image are stub modules: nothing these configs run calls them; Detectron2's ops
come from this environment's Detectron2). Nothing of rtinst is imported (its Detectron2 components would collide with the
reference's registrations): the seeded weights and inputs are loaded by file path
(``rtinst/reference/``), as our tests load them. For each config it writes
``tests/fixtures/reference/<name>.json``: the detections of a seeded 512 x 640 picture at the
config's score threshold and at threshold 0 (boxes crossing the border, low scores), and for a
seeded two-image batch every loss value and the gradient norm of every parameter.
This is a developer tool; the test suite never runs it.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
KEY_SPECS = ROOT.parent / "shared" / "reference" / "checkpoint_keys"
OUTPUT = ROOT / "tests" / "fixtures" / "reference"


def _load(name):
    path = ROOT / "rtinst" / "reference" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"rtinst_reference_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seeded_weights = _load("seeded_weights")
golden_inputs = _load("golden_inputs")

# name: (reference, its config, its checkpoint's key list, ours)
CASES = {
    "fcos_R_50_1x": ("adelaidet", "configs/FCOS-Detection/R_50_1x.yaml",
                     "adet_fcos_R_50_1x.tsv", "configs/FCOS/R_50_1x.yaml"),
    "blendmask_R_50_1x": ("adelaidet", "configs/BlendMask/R_50_1x.yaml",
                          "adet_blendmask_R_50_1x.tsv", "configs/BlendMask/R_50_1x.yaml"),
    "blendmask_RT_R_50": ("adelaidet", "configs/BlendMask/RT_R_50_4x_bn-head_syncbn_shtw.yaml",
                          "adet_blendmask_RT_R_50_4x_bn-head_syncbn_shtw.tsv",
                          "configs/BlendMask/RT_R_50.yaml"),
    "centermask_V_39_eSE": ("centermask2", "configs/centermask/centermask_V_39_eSE_FPN_ms_3x.yaml",
                            "centermask2_V_39_eSE_FPN_ms_3x.tsv",
                            "configs/CenterMask/centermask_V_39_eSE_FPN_ms_3x.yaml"),
    "centermask_lite_V_19_eSE": ("centermask2",
                                 "configs/centermask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml",
                                 "centermask2_lite_V_19_eSE_FPN_ms_4x.tsv",
                                 "configs/CenterMask/centermask_lite_V_19_eSE_FPN_ms_4x.yaml"),
}


def import_reference(reference, repo):
    """Imports the reference's packages (registering its Detectron2 components); returns its
    ``get_cfg``."""
    for name in ("adet", "centermask", "rtinst"):
        if name in sys.modules:
            raise SystemExit(f"{name} is already imported: run this in a fresh interpreter")
    sys.path.insert(0, str(repo))
    sys.dont_write_bytecode = True  # leave the checkout untouched
    if reference == "adelaidet":
        # adet/layers imports its CUDA/C++ extension for ops these configs never call, and
        # CondInst (imported by adet.modeling) scikit-image for its colour conversions
        sys.modules["adet._C"] = types.ModuleType("adet._C")
        if importlib.util.find_spec("skimage") is None:
            sys.modules["skimage"] = types.ModuleType("skimage")
            sys.modules["skimage"].color = types.ModuleType("skimage.color")
        import adet.modeling  # noqa: F401
        from adet.config import get_cfg
        package = sys.modules["adet"]
    else:
        import centermask.modeling  # noqa: F401
        from centermask.config import get_cfg
        package = sys.modules["centermask"]
    if not os.path.abspath(package.__file__).startswith(os.path.abspath(repo) + os.sep):
        raise SystemExit(f"imported {package.__name__} from {package.__file__}, not {repo}")
    return get_cfg


def build_reference(get_cfg, repo, config, key_spec, score_threshold=None):
    """The reference model of ``config`` on CPU, with the name-seeded weights of ``key_spec``
    (and ``MODEL.FCOS.INFERENCE_TH_TEST`` = ``score_threshold`` when given), in eval mode."""
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(Path(repo) / config))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    if score_threshold is not None:
        cfg.MODEL.FCOS.INFERENCE_TH_TEST = score_threshold
    torch.manual_seed(0)
    model = build_model(cfg)
    spec = seeded_weights.read_key_spec(KEY_SPECS / key_spec)
    if sorted(model.state_dict()) != sorted(name for name, _, _ in spec):
        raise SystemExit(f"{config}: the model's keys are not those of {key_spec}")
    state = seeded_weights.seeded_state_dict(spec, seeded_weights.DETECTRON2_RULE)
    model.load_state_dict(state, strict=True)
    digest = seeded_weights.state_dict_digest(dict(sorted(state.items())))
    return cfg, model.eval(), digest


def _inference_records(get_cfg, repo, config, key_spec):
    cfg, _, _ = build_reference(get_cfg, repo, config, key_spec)
    records = {}
    for label, threshold in golden_inputs.score_thresholds(cfg.MODEL.FCOS.INFERENCE_TH_TEST).items():
        _, model, _ = build_reference(get_cfg, repo, config, key_spec, threshold)
        with torch.no_grad():
            instances = model(golden_inputs.inference_inputs())[0]["instances"]
        records[label] = {"score_threshold": threshold,
                          "detections": golden_inputs.detection_records(instances)}
    return records


def _commit(repo):
    try:
        return subprocess.check_output(["git", "-C", str(repo), "rev-parse", "HEAD"],
                                       text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, choices=("adelaidet", "centermask2"))
    parser.add_argument("--repo", required=True, type=Path, help="a checkout of the reference")
    parser.add_argument("--cases", nargs="*", help="names from CASES (default: the reference's)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    get_cfg = import_reference(args.reference, args.repo)
    args.output.mkdir(parents=True, exist_ok=True)
    names = args.cases or [n for n, case in CASES.items() if case[0] == args.reference]
    for name in names:
        reference, config, key_spec, ours = CASES[name]
        if reference != args.reference:
            raise SystemExit(f"{name} is a {reference} case")
        _, model, digest = build_reference(get_cfg, args.repo, config, key_spec)
        record = {
            "reference": reference,
            "reference_commit": _commit(args.repo),
            "reference_config": config,
            "our_config": ours,
            "key_spec": key_spec,
            "weights": "seeded_state_dict(read_key_spec(key_spec), DETECTRON2_RULE)",
            "weights_sha256_of": "state_dict_digest of the weights sorted by name",
            "weights_sha256": digest,
            "inference": _inference_records(get_cfg, args.repo, config, key_spec),
            "training": golden_inputs.training_record(
                model, with_basis_sem=reference == "adelaidet"),
            "torch": torch.__version__,
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        }
        path = args.output / f"{name}.json"
        path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        counts = {k: len(v["detections"]) for k, v in record["inference"].items()}
        print(f"{path}: detections {counts}, losses {record['training']['losses']}")


if __name__ == "__main__":
    main()
