#!/usr/bin/env python
"""Installs rtinst (shared code) and the method packages: blendmask, centermask, blitzmask, and
every Detectron2-style project under projects/<Name>/<package>/ (e.g. projects/YOLACT/yolact).
Each method package is declared in the entry-point group ``rtinst.methods``, through which
rtinst imports it (rtinst/methods.py); after adding a project, re-run ``bash scripts/setup.sh``
(or ``pip install -e .``) so that its entry point is written."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
METHODS = ["blendmask", "centermask", "blitzmask"]

# What rtinst, the method packages, tools/*.py and train_net.py import (tests/test_packaging.py
# checks this list against their imports). Exact versions: requirements/constraints.txt.
INSTALL_REQUIRES = [
    # rtinst's own build of v0.6 (third_party/detectron2_py/build_wheel.py, run by
    # scripts/setup.sh): version 0.6+purepy, which "==0.6" accepts (PEP 440 ignores a local
    # label); not on the package index. `import rtinst` checks its patches.
    "detectron2==0.6",
    "torch",
    "torchvision",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "fvcore",
    "pycocotools",
    "faster-coco-eval",  # the fast COCO evaluation (rtinst/evaluation/coco_evaluation.py)
    "scipy",
    "matplotlib",
    "PyYAML",
    "tqdm",
    "tensorboard",
    # video evaluation (HOTA, IDF1). Its metadata asks for opencv-python, which would shadow
    # the headless build: scripts/setup.sh installs it with --no-deps (requirements/no-deps.txt)
    # and rtinst with `pip install --no-deps -e .`
    "trackeval",
]
EXTRAS_REQUIRE = {"export": ["onnx", "onnxruntime"], "test": ["pytest"]}


def project_packages():
    """{package name: folder} for each projects/<Name>/<package>/__init__.py."""
    return {
        init.parent.name: init.parent.relative_to(ROOT).as_posix()
        for init in sorted(ROOT.glob("projects/*/*/__init__.py"))
    }


def all_packages(mapping):
    packages = [p for p in find_packages(include=[f"{t}*" for t in ["rtinst", *METHODS]])]
    for name, folder in mapping.items():
        packages.append(name)
        packages += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return packages


projects = project_packages()
setup(
    name="rtinst",
    version="0.1.0",
    description="Real-time instance segmentation methods as Detectron2 plugins",
    python_requires=">=3.10",
    packages=all_packages(projects),
    package_dir=projects,
    entry_points={"rtinst.methods": [f"{name} = {name}" for name in [*METHODS, *projects]]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
)
