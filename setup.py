#!/usr/bin/env python
"""Installs rtinst (shared code) and the method packages: blendmask, centermask, blitzmask, and
every Detectron2-style project under projects/<Name>/<package>/ (e.g. projects/YOLACT/yolact)."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
TOP_LEVEL = ["rtinst", "blendmask", "centermask", "blitzmask"]


def project_packages():
    """{package name: folder} for each projects/<Name>/<package>/__init__.py."""
    return {
        init.parent.name: init.parent.relative_to(ROOT).as_posix()
        for init in sorted(ROOT.glob("projects/*/*/__init__.py"))
    }


def all_packages(mapping):
    packages = [p for p in find_packages(include=[f"{t}*" for t in TOP_LEVEL])]
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
    install_requires=["detectron2>=0.6", "torch", "torchvision", "fvcore", "pycocotools",
                      "faster-coco-eval", "opencv-python-headless", "tqdm"],
    extras_require={"export": ["onnx", "onnxruntime"], "test": ["pytest"]},
)
