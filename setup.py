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
    install_requires=["detectron2>=0.6", "torch", "torchvision", "fvcore", "pycocotools",
                      "faster-coco-eval", "opencv-python-headless", "tqdm"],
    extras_require={"export": ["onnx", "onnxruntime"], "test": ["pytest"]},
)
