#!/usr/bin/env python
"""Build (and optionally install) detectron2 v0.6 as a pure-Python wheel named ``detectron2``.

The sources come from the ``pb1-detectron2==0.6`` sdist on the package index, which holds
detectron2 v0.6's Python files byte for byte but not its C++/CUDA sources. This script

1. finds the sdist (``--sdist``, a ``--find-links`` folder, or the package index) and checks its
   sha256 against the pin below;
2. copies ``detectron2/`` and the three projects v0.6 installs under ``detectron2.projects``;
3. applies the small source patches listed in ``PATCHES`` (each must match exactly once);
4. adds ``_C.py`` from this folder as ``detectron2/_C.py``;
5. writes ``detectron2-0.6+purepy-py3-none-any.whl`` and, with ``--install``, pip-installs it.

With ``--install`` it does nothing when a compiled detectron2 (a ``_C`` extension module) is
already installed, or when this very build is.

Usage::

    python third_party/detectron2_py/build_wheel.py --install            # build + install
    python third_party/detectron2_py/build_wheel.py --out wheels/        # build only
"""
import argparse
import base64
import hashlib
import importlib.util
import io
import os
import re
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

SDIST_NAME = "pb1-detectron2-0.6.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
VERSION = "0.6+purepy"
HERE = Path(__file__).resolve().parent

# (file inside the package, text in v0.6, replacement, why)
PATCHES = [
    (
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
        "Pillow 10 removed the alias Image.LINEAR (== Image.BILINEAR); Python 3.12 has no Pillow < 10.",
    ),
    (
        "detectron2/data/common.py",
        "cur_idx = self._rng.sample(self._fallback_candidates, k=1)[0]",
        "cur_idx = self._rng.choice(sorted(self._fallback_candidates))",
        "Python 3.11 random.sample() rejects sets: a mapper returning None (skipped sample) crashed.",
    ),
    (
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
        "pkg_resources is gone from setuptools >= 81 and absent from fresh Python 3.12 venvs.",
    ),
    (
        "detectron2/model_zoo/model_zoo.py",
        "import pkg_resources\n",
        "",
        "(same)",
    ),
    (
        "detectron2/engine/launch.py",
        '    assert torch.cuda.is_available(), "cuda is not available. Please check your installation."\n',
        "",
        "Multi-process training on CPU (gloo backend): v0.6 required CUDA and NCCL.",
    ),
    (
        "detectron2/engine/launch.py",
        'backend="NCCL",',
        'backend="NCCL" if torch.cuda.is_available() else "GLOO",',
        "(same)",
    ),
    (
        "detectron2/engine/launch.py",
        "    assert num_gpus_per_machine <= torch.cuda.device_count()\n    torch.cuda.set_device(local_rank)\n",
        "    if torch.cuda.is_available():\n        assert num_gpus_per_machine <= torch.cuda.device_count()\n        torch.cuda.set_device(local_rank)\n",
        "(same)",
    ),
    (
        "detectron2/engine/defaults.py",
        '    if "device_ids" not in kwargs:\n',
        '    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:\n',
        "DistributedDataParallel of a CPU model takes no device_ids (gloo training on CPU).",
    ),
]

PROJECTS = {
    "projects/PointRend/point_rend": "detectron2/projects/point_rend",
    "projects/DeepLab/deeplab": "detectron2/projects/deeplab",
    "projects/Panoptic-DeepLab/panoptic_deeplab": "detectron2/projects/panoptic_deeplab",
}

REQUIRES = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
    "faster-coco-eval>=1.8",
]


def build_id():
    """Identifies this build: the sdist pin, the patches and _C.py."""
    h = hashlib.sha256(SDIST_SHA256.encode())
    h.update(repr(PATCHES).encode())
    h.update((HERE / "_C.py").read_bytes())
    return h.hexdigest()[:16]


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def find_sdist(sdist, find_links, cache_dir):
    candidates = [Path(sdist)] if sdist else []
    candidates += [Path(d) / SDIST_NAME for d in find_links]
    candidates.append(Path(cache_dir) / SDIST_NAME)
    for c in candidates:
        if c.is_file():
            return c
    if sdist:
        raise SystemExit(f"error: sdist not found: {sdist}")
    return download_sdist(Path(cache_dir))


def download_sdist(cache_dir):
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
    page_url = f"{index}/pb1-detectron2/"
    try:
        page = urllib.request.urlopen(page_url, timeout=60).read().decode()
    except OSError as e:
        raise SystemExit(
            f"error: cannot reach the package index ({page_url}): {e}\n"
            f"Offline? Put {SDIST_NAME} in a folder and pass --find-links FOLDER."
        )
    links = re.findall(r'href="([^"]*' + re.escape(SDIST_NAME) + r'[^"]*)"', page)
    if not links:
        raise SystemExit(f"error: {SDIST_NAME} is not listed at {page_url}")
    url = urllib.parse.urljoin(page_url, links[0].split("#")[0])
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / SDIST_NAME
    print(f"downloading {url}")
    with urllib.request.urlopen(url, timeout=120) as r:
        data = r.read()
    target.write_bytes(data)
    return target


def read_sources(sdist_path):
    """Returns {path in the wheel: bytes} for the detectron2 package and its projects."""
    digest = _sha256(sdist_path)
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"error: {sdist_path} has sha256 {digest}, expected {SDIST_SHA256} (pb1-detectron2==0.6)"
        )
    files = {}
    with tarfile.open(sdist_path) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            rel = member.name.split("/", 1)[1]
            if rel.startswith("detectron2/"):
                target = rel
            else:
                target = next(
                    (rel.replace(src, dst, 1) for src, dst in PROJECTS.items() if rel.startswith(src + "/")),
                    None,
                )
            if target is None or "/csrc/" in target:
                continue
            files[target] = tar.extractfile(member).read()
    return files


def apply_patches(files):
    for path, old, new, why in PATCHES:
        text = files[path].decode()
        if text.count(old) < 1:
            raise SystemExit(f"error: patch for {path} ({why}) does not match the sources")
        files[path] = text.replace(old, new).encode()
    files["detectron2/_C.py"] = (HERE / "_C.py").read_bytes()
    files["detectron2/PURE_BUILD"] = build_id().encode()


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(files, out_dir):
    dist_info = f"detectron2-{VERSION}.dist-info"
    metadata = "\n".join(
        ["Metadata-Version: 2.1", "Name: detectron2", f"Version: {VERSION}",
         "Summary: detectron2 v0.6 (pure-Python build: compiled ops replaced by PyTorch/torchvision)",
         "Home-page: https://github.com/facebookresearch/detectron2", "License: Apache-2.0",
         "Requires-Python: >=3.8"]
        + [f"Requires-Dist: {r}" for r in REQUIRES]
    ) + "\n"
    wheel = "Wheel-Version: 1.0\nGenerator: rtinst build_wheel.py\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    entries = dict(sorted(files.items()))
    entries[f"{dist_info}/METADATA"] = metadata.encode()
    entries[f"{dist_info}/WHEEL"] = wheel.encode()
    entries[f"{dist_info}/top_level.txt"] = b"detectron2\n"
    record = [_record_line(p, d) for p, d in entries.items()] + [f"{dist_info}/RECORD,,"]
    entries[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"detectron2-{VERSION}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for p, d in entries.items():
            info = zipfile.ZipInfo(p, date_time=(2021, 11, 16, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, d)
    path.write_bytes(buf.getvalue())
    return path


def installed_state():
    """'compiled', 'current' (this build), 'other' or None, for the detectron2 pip would import."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    if any(pkg.glob("_C*.so")) or any(pkg.glob("_C*.pyd")):
        return "compiled"
    marker = pkg / "PURE_BUILD"
    if marker.is_file() and marker.read_text().strip() == build_id():
        return "current"
    return "other"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sdist", help=f"path to {SDIST_NAME}")
    p.add_argument("--find-links", action="append", default=[], help="folder that holds the sdist")
    p.add_argument("--cache-dir", default=os.path.expanduser("~/.cache/rtinst"))
    p.add_argument("--out", default=None, help="folder for the wheel (default: the cache dir)")
    p.add_argument("--install", action="store_true", help="pip-install the wheel into this Python")
    args = p.parse_args(argv)

    if args.install:
        state = installed_state()
        if state == "compiled":
            print("detectron2 with a compiled _C is already installed: leaving it alone.")
            return 0
        if state == "current":
            print("detectron2 (pure-Python build) is already installed and current.")
            return 0

    sdist = find_sdist(args.sdist, args.find_links, args.cache_dir)
    files = read_sources(sdist)
    apply_patches(files)
    wheel = write_wheel(files, args.out or args.cache_dir)
    print(f"built {wheel}")
    if args.install:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q", str(wheel)]
        )
        print("installed detectron2", VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
