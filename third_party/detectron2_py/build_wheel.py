#!/usr/bin/env python
"""Build (and optionally install) detectron2 v0.6 as a pure-Python wheel named ``detectron2``.

The sources come from the ``pb1-detectron2==0.6`` sdist on the package index, which holds
detectron2 v0.6's Python files byte for byte but not its C++/CUDA sources. This script

1. finds the sdist (``--sdist``, a ``--find-links`` folder, or the package index) and checks its
   sha256 against the pin below;
2. copies ``detectron2/`` and the three projects v0.6 installs under ``detectron2.projects``;
3. applies the small source patches listed in ``PATCHES`` (each must match exactly once);
4. adds the files in ``ADDED_FILES`` from this folder: ``_C.py`` as ``detectron2/_C.py`` and
   ``safe_pickle.py`` as ``detectron2/utils/safe_pickle.py``, and ``detectron2/_rtinst_patches.py``
   listing the ids of the patches (``import rtinst`` checks it);
5. writes ``detectron2-0.6+purepy-py3-none-any.whl`` and, with ``--install``, pip-installs it.

With ``--install`` it does nothing when this very build is installed, or a compiled detectron2
(a ``_C`` extension module) whose sources ``--patch-tree`` patched; a compiled detectron2
without those patches is replaced.

Usage::

    python third_party/detectron2_py/build_wheel.py --install            # build + install
    python third_party/detectron2_py/build_wheel.py --out wheels/        # build only
    python third_party/detectron2_py/build_wheel.py --patch-tree ~/detectron2  # a v0.6 checkout
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

# Each patch: (id, file inside the package, text in v0.6, replacement, why). The text must occur
# exactly once in the file (a patch that no longer matches fails the build). The ids of a build
# are listed in its ``detectron2/_rtinst_patches.py`` (MARKER, a module so that detectron2's own
# setup.py installs it too); ``import rtinst`` reads that file (without importing detectron2)
# and stops with one line naming the ids it needs and the build lacks
# (rtinst/utils/detectron2_build.py, which says which ids rtinst needs and why). Several
# entries with the same id are one change; give a new change a new id.
PATCHES = [
    # --- Python >= 3.11, Pillow >= 10, setuptools >= 81
    (
        "pillow-bilinear",
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
        "Pillow 10 removed the alias Image.LINEAR (== Image.BILINEAR); "
        "Python 3.12 has no Pillow < 10.",
    ),
    (
        "sample-sorted-set",
        "detectron2/data/common.py",
        "cur_idx = self._rng.sample(self._fallback_candidates, k=1)[0]",
        "cur_idx = self._rng.choice(sorted(self._fallback_candidates))",
        "Python 3.11 random.sample() rejects sets: a mapper returning None (skipped sample) "
        "crashed.",
    ),
    (
        "no-pkg-resources",
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n'
        '        "detectron2.model_zoo", os.path.join("configs", config_path)\n'
        '    )',
        'cfg_file = os.path.join(os.path.dirname(__file__), "configs", config_path)',
        "pkg_resources is gone from setuptools >= 81 and absent from fresh Python 3.12 venvs.",
    ),
    ("no-pkg-resources", "detectron2/model_zoo/model_zoo.py", "import pkg_resources\n", "",
     "(same)"),
    # --- training on CPU processes
    (
        "cpu-ddp",
        "detectron2/engine/launch.py",
        '    assert torch.cuda.is_available(), '
        '"cuda is not available. Please check your installation."\n',
        "",
        "Multi-process training on CPU (gloo backend): v0.6 required CUDA and NCCL.",
    ),
    (
        "cpu-ddp",
        "detectron2/engine/launch.py",
        'backend="NCCL",',
        'backend="NCCL" if torch.cuda.is_available() else "GLOO",',
        "(same)",
    ),
    (
        "cpu-ddp",
        "detectron2/engine/launch.py",
        "    assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "    torch.cuda.set_device(local_rank)\n",
        "    if torch.cuda.is_available():\n"
        "        assert num_gpus_per_machine <= torch.cuda.device_count()\n"
        "        torch.cuda.set_device(local_rank)\n",
        "(same)",
    ),
    (
        "cpu-ddp",
        "detectron2/engine/defaults.py",
        '    if "device_ids" not in kwargs:\n',
        '    if "device_ids" not in kwargs and next(model.parameters()).is_cuda:\n',
        "DistributedDataParallel of a CPU model takes no device_ids (gloo training on CPU).",
    ),
    # --- torch 2.x
    (
        "export-without-caffe2",
        "detectron2/export/__init__.py",
        "from .api import *\n"
        "from .flatten import TracingAdapter\n"
        "from .torchscript import scripting_with_instances, dump_torchscript_IR\n"
        "\n"
        '__all__ = [k for k in globals().keys() if not k.startswith("_")]\n',
        "import importlib.util\n"
        "\n"
        "from .flatten import TracingAdapter\n"
        "from .torchscript import scripting_with_instances, dump_torchscript_IR\n"
        "\n"
        "# The Caffe2 exporter (.api) needs the caffe2 package, which torch 2.x does not ship:\n"
        "# it is imported on first use of one of its names, not with detectron2.export.\n"
        "_CAFFE2_API = (\n"
        '    "add_export_config",\n'
        '    "export_caffe2_model",\n'
        '    "Caffe2Model",\n'
        '    "export_onnx_model",\n'
        '    "Caffe2Tracer",\n'
        ")\n"
        "\n"
        "\n"
        "def __getattr__(name):\n"
        '    """The names of the Caffe2 exporter, imported from ``.api`` when first asked for."""\n'
        "    if name not in _CAFFE2_API:\n"
        '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")\n'
        "    try:\n"
        "        from . import api\n"
        "    except ImportError as e:\n"
        "        raise ImportError(\n"
        '            f"detectron2.export.{name} is part of the Caffe2 exporter, which needs the "\n'
        '            f"caffe2 package (not shipped with torch 2.x): {e}"\n'
        "        ) from e\n"
        "    return getattr(api, name)\n"
        "\n"
        "\n"
        '__all__ = ["TracingAdapter", "scripting_with_instances", "dump_torchscript_IR"]\n'
        'if importlib.util.find_spec("caffe2") is not None:\n'
        "    __all__ += list(_CAFFE2_API)\n",
        "`import detectron2.export` imported caffe2 (gone from torch 2.x) unconditionally, "
        "breaking TorchScript (scripting_with_instances), TracingAdapter and "
        "detectron2.utils.analysis (FlopCountAnalysis), none of which needs it.",
    ),
    (
        "torch2-lr-schedulers",
        "detectron2/engine/hooks.py",
        "from .train_loop import HookBase\n",
        "from .train_loop import HookBase\n"
        "\n"
        "# torch >= 2.0: StepLR, OneCycleLR, ... derive from LRScheduler, not from _LRScheduler\n"
        "_TORCH_LR_SCHEDULER = getattr(\n"
        '    torch.optim.lr_scheduler, "LRScheduler", torch.optim.lr_scheduler._LRScheduler\n'
        ")\n",
        "The LRScheduler hook saved and restored only _LRScheduler subclasses; torch 2.x's own "
        "schedulers are not, so resuming restarted their schedule.",
    ),
    (
        "torch2-lr-schedulers",
        "detectron2/engine/hooks.py",
        "    def state_dict(self):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler._LRScheduler):\n",
        "    def state_dict(self):\n"
        "        if isinstance(self.scheduler, _TORCH_LR_SCHEDULER):\n",
        "(same)",
    ),
    (
        "torch2-lr-schedulers",
        "detectron2/engine/hooks.py",
        "    def load_state_dict(self, state_dict):\n"
        "        if isinstance(self.scheduler, torch.optim.lr_scheduler._LRScheduler):\n",
        "    def load_state_dict(self, state_dict):\n"
        "        if isinstance(self.scheduler, _TORCH_LR_SCHEDULER):\n",
        "(same)",
    ),
    (
        "quiet-jit-script",
        "detectron2/__init__.py",
        "setup_environment()\n",
        "setup_environment()\n"
        "\n"
        "\n"
        "def _import_fvcore_nn_quietly():\n"
        '    """Imports fvcore.nn, which runs torch.jit.script at import, without torch\'s "\n'
        '    deprecation warning for torch.jit.script."""\n'
        "    import warnings\n"
        "\n"
        "    with warnings.catch_warnings():\n"
        "        warnings.filterwarnings(\n"
        '            "ignore", message=r"`torch\\.jit\\.script` is deprecated", '
        "category=FutureWarning\n"
        "        )\n"
        "        import fvcore.nn  # noqa: F401\n"
        "\n"
        "\n"
        "_import_fvcore_nn_quietly()\n",
        "torch >= 2.10 warns that torch.jit.script is deprecated, and fvcore.nn (imported by "
        "detectron2.layers, .modeling, .engine...) scripts its two focal losses at import: every "
        "command printed the warning. fvcore is not patched here, so detectron2 imports it first, "
        "with exactly that warning filtered.",
    ),
    (
        "quiet-jit-script",
        "detectron2/modeling/box_regression.py",
        "import math\n",
        "import math\nimport warnings\n",
        "torch >= 2.10 warns that torch.jit.script is deprecated; the two @torch.jit.script "
        "classes here printed that warning at every import of detectron2.modeling. They stay "
        "scripted (TorchScript models use them), without the warning.",
    ),
    (
        "quiet-jit-script",
        "detectron2/modeling/box_regression.py",
        "_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)\n",
        "_DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)\n"
        "\n"
        "\n"
        "def _script_quietly(cls):\n"
        '    """``torch.jit.script(cls)`` without torch\'s deprecation warning for it."""\n'
        "    with warnings.catch_warnings():\n"
        "        warnings.filterwarnings(\n"
        '            "ignore", message=r"`torch\\.jit\\.script` is deprecated", '
        "category=FutureWarning\n"
        "        )\n"
        "        return torch.jit.script(cls)\n",
        "(same)",
    ),
    (
        "quiet-jit-script",
        "detectron2/modeling/box_regression.py",
        "@torch.jit.script\nclass Box2BoxTransform(object):\n",
        "@_script_quietly\nclass Box2BoxTransform(object):\n",
        "(same)",
    ),
    (
        "quiet-jit-script",
        "detectron2/modeling/box_regression.py",
        "@torch.jit.script\nclass Box2BoxTransformRotated(object):\n",
        "@_script_quietly\nclass Box2BoxTransformRotated(object):\n",
        "(same)",
    ),
    # --- log files
    (
        "plain-log-files",
        "detectron2/utils/logger.py",
        "import os\nimport sys\n",
        "import os\nimport re\nimport sys\n",
        "log.txt held ANSI colour codes: default_setup() logs the config files highlighted by "
        "pygments and print_instances_class_histogram() a termcolor table, and the file handler "
        "wrote messages as they are. Its (plain) formatter now drops ANSI escape sequences.",
    ),
    (
        "plain-log-files",
        "detectron2/utils/logger.py",
        "@functools.lru_cache()  # so that calling setup_logger multiple times",
        "class _PlainFormatter(logging.Formatter):\n"
        '    """A formatter whose output has no ANSI escape sequences (colours) left."""\n'
        "\n"
        '    _ANSI = re.compile(r"\\x1b\\[[0-?]*[ -/]*[@-~]")\n'
        "\n"
        "    def format(self, record):\n"
        '        return self._ANSI.sub("", super().format(record))\n'
        "\n"
        "\n"
        "@functools.lru_cache()  # so that calling setup_logger multiple times",
        "(same)",
    ),
    (
        "plain-log-files",
        "detectron2/utils/logger.py",
        "    plain_formatter = logging.Formatter(\n",
        "    plain_formatter = _PlainFormatter(\n",
        "(same)",
    ),
    (
        "quiet-collect-env",
        "detectron2/utils/collect_env.py",
        "    from torch.utils.cpp_extension import CUDA_HOME, ROCM_HOME\n",
        "    if has_gpu:\n"
        "        from torch.utils.cpp_extension import CUDA_HOME, ROCM_HOME\n"
        "    else:  # only read where there is a GPU; importing it then logs a warning\n"
        "        CUDA_HOME = ROCM_HOME = None\n",
        "default_setup()'s environment table imported torch.utils.cpp_extension, which on a CUDA "
        "build of torch without a GPU logs \"No CUDA runtime is found, using CUDA_HOME=...\" at "
        "every training start; CUDA_HOME / ROCM_HOME are only used where there is a GPU.",
    ),
    # --- pickle files never run code
    (
        "safe-pickle",
        "detectron2/checkpoint/detection_checkpoint.py",
        "from detectron2.utils.file_io import PathManager\n",
        "from detectron2.utils import safe_pickle\n"
        "from detectron2.utils.file_io import PathManager\n",
        "pickle.load of a .pkl checkpoint runs any callable the file names (os.system, open...): "
        "read it with detectron2.utils.safe_pickle (numpy arrays and plain containers only). "
        "`import pickle` stays (code that swaps detection_checkpoint.pickle keeps working).",
    ),
    (
        "safe-pickle",
        "detectron2/checkpoint/detection_checkpoint.py",
        'data = pickle.load(f, encoding="latin1")',
        'data = safe_pickle.load(f, encoding="latin1")',
        "(same)",
    ),
    (
        "safe-pickle",
        "detectron2/data/build.py",
        "from detectron2.utils.env import seed_all_rng\n",
        "from detectron2.utils import safe_pickle\nfrom detectron2.utils.env import seed_all_rng\n",
        "load_proposals_into_dataset read proposal files with pickle.load, which runs any "
        "callable the file names: read them with detectron2.utils.safe_pickle.",
    ),
    (
        "safe-pickle",
        "detectron2/data/build.py",
        '        proposals = pickle.load(f, encoding="latin1")\n',
        "        try:\n"
        '            proposals = safe_pickle.load(f, encoding="latin1")\n'
        "        except pickle.UnpicklingError as e:\n"
        '            raise pickle.UnpicklingError(f"proposal file {proposal_file}: {e}") from None\n',
        "(same; the error names the file)",
    ),
    (
        "pyth-weights-only",
        "detectron2/checkpoint/detection_checkpoint.py",
        "                data = torch.load(f)\n",
        "                data = torch.load(f, weights_only=True)\n",
        "pycls .pyth checkpoints were read with torch.load's full unpickler on torch < 2.6 "
        "(arbitrary code): tensors and plain containers only, on every torch.",
    ),
    (
        "safe-zoo-yaml",
        "detectron2/model_zoo/configs/Base-RetinaNet.yaml",
        '    SIZES: !!python/object/apply:eval ["[[x, x * 2**(1.0/3), x * 2**(2.0/3) ] for x in '
        '[32, 64, 128, 256, 512 ]]"]\n',
        "    # [[x, x * 2**(1/3), x * 2**(2/3)] for x in [32, 64, 128, 256, 512]]\n"
        "    SIZES: [[32, 40.31747359663594, 50.79683366298238], "
        "[64, 80.63494719327188, 101.59366732596476], "
        "[128, 161.26989438654377, 203.18733465192952], "
        "[256, 322.53978877308754, 406.37466930385904], "
        "[512, 645.0795775461751, 812.7493386077181]]\n",
        "The one model-zoo config with a Python tag (eval of a list comprehension): configs are "
        "read with safe YAML (a tag could run code), so it holds the values themselves.",
    ),
    # --- images
    (
        "16-bit-images",
        "detectron2/data/detection_utils.py",
        "        image = image.convert(conversion_format)\n    image = np.asarray(image)\n",
        "        image = _to_8_bits(image).convert(conversion_format)\n"
        "    image = np.asarray(image)\n",
        "Pillow's convert() clips 16-bit (I;16, I) and float (F) images to 0..255: a 16-bit PNG "
        "became all white. They are scaled to 8 bits (65535 -> 255; floats in [0, 1] -> 0..255; "
        "a float image outside [0, 1] is an OSError naming its range, which rtinst's loader "
        "reports as an unreadable image).",
    ),
    (
        "16-bit-images",
        "detectron2/data/detection_utils.py",
        "def convert_PIL_to_numpy(image, format):\n",
        "def _to_8_bits(image):\n"
        '    """``image``, or a grey 8-bit ("L") copy of a 16-bit or float grey one."""\n'
        '    if image.mode.startswith("I"):\n'
        "        values = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0\n"
        '    elif image.mode == "F":\n'
        "        values = np.asarray(image, dtype=np.float64)\n"
        "        if values.size and not (np.isfinite(values).all() and values.min() >= 0\n"
        "                                and values.max() <= 1):\n"
        "            raise OSError(\n"
        '                "float image with values outside [0, 1] "\n'
        '                f"({np.nanmin(values)} .. {np.nanmax(values)}): cannot scale it to 8 bits"\n'
        "            )\n"
        "        values = values * 255.0\n"
        "    else:\n"
        "        return image\n"
        '    return Image.fromarray(np.round(values).astype(np.uint8), mode="L")\n'
        "\n"
        "\n"
        "def convert_PIL_to_numpy(image, format):\n",
        "(same)",
    ),
    # --- numpy >= 1.24
    (
        "numpy-int",
        "detectron2/data/build.py",
        "    histogram = np.zeros((num_classes,), dtype=np.int)\n",
        "    histogram = np.zeros((num_classes,), dtype=int)\n",
        "numpy 1.24 removed np.int: the AttributeError was swallowed by "
        "get_detection_dataset_dicts, so the training set's class histogram was never logged.",
    ),
    (
        "numpy-int",
        "detectron2/data/build.py",
        '[x["category_id"] for x in annos if not x.get("iscrowd", 0)], dtype=np.int\n',
        '[x["category_id"] for x in annos if not x.get("iscrowd", 0)], dtype=int\n',
        "(same)",
    ),
    # --- deformable convolutions without the compiled _C
    (
        "torchvision-deform-conv",
        "detectron2/layers/deform_conv.py",
        "deform_conv = _DeformConv.apply\nmodulated_deform_conv = _ModulatedDeformConv.apply\n",
        "def deform_conv(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,\n"
        "                deformable_groups=1, im2col_step=64):\n"
        "    return deform_conv2d(input, offset, weight, stride=stride, padding=padding,\n"
        "                         dilation=dilation)\n"
        "\n"
        "\n"
        "def modulated_deform_conv(input, offset, mask, weight, bias=None, stride=1, padding=0,\n"
        "                          dilation=1, groups=1, deformable_groups=1):\n"
        "    return deform_conv2d(input, offset, weight, bias, stride=stride, padding=padding,\n"
        "                         dilation=dilation, mask=mask)\n",
        "DeformConv / ModulatedDeformConv called the compiled _C kernels, which this build has "
        "not: ModulatedDeformConv raised on every device, DeformConv had no backward on the CPU. "
        "torchvision's deform_conv2d (differentiable, CPU and CUDA; groups and deformable "
        "groups taken from the tensors' shapes) computes the same, with DCNv2's offset layout.",
    ),
]

# files of this folder added to the package: {path in the wheel: (file here, patch id)}
ADDED_FILES = {
    "detectron2/_C.py": ("_C.py", "pure-python-ops"),
    "detectron2/utils/safe_pickle.py": ("safe_pickle.py", "safe-pickle"),
}
# what --patch-tree does not add to a compiled detectron2's sources: the pure-Python _C
TREE_SKIPS = {"detectron2/_C.py"}
MARKER = "detectron2/_rtinst_patches.py"

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
    """Identifies this build: the sdist pin, the patches and the added files."""
    h = hashlib.sha256(SDIST_SHA256.encode())
    h.update(repr(PATCHES).encode())
    for target, (name, _) in sorted(ADDED_FILES.items()):
        h.update(target.encode())
        h.update((HERE / name).read_bytes())
    return h.hexdigest()[:16]


def patch_ids(added=ADDED_FILES):
    """The ids of ``PATCHES`` and of the ``added`` files, in order, each once."""
    ids = [patch[0] for patch in PATCHES] + [pid for _, pid in added.values()]
    return list(dict.fromkeys(ids))


def marker_text(added=ADDED_FILES):
    """The content of ``MARKER``: the patch ids of a build, as the tuple ``PATCHES``."""
    return (
        '"""detectron2 v0.6 with the source patches of rtinst\'s '
        'third_party/detectron2_py/build_wheel.py:\n'
        'their ids, which rtinst/utils/detectron2_build.py reads at ``import rtinst``."""\n'
        "PATCHES = (\n"
        + "".join(f'    "{pid}",\n' for pid in patch_ids(added))
        + ")\n"
    )


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


def _project_target(rel):
    """Where the sdist file ``rel`` of one of ``PROJECTS`` goes in the wheel (None: nowhere)."""
    for src, dst in PROJECTS.items():
        if rel.startswith(src + "/"):
            return rel.replace(src, dst, 1)
    return None


def read_sources(sdist_path):
    """Returns {path in the wheel: bytes} for the detectron2 package and its projects."""
    digest = _sha256(sdist_path)
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"error: {sdist_path} has sha256 {digest}, "
            f"expected {SDIST_SHA256} (pb1-detectron2==0.6)"
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
                target = _project_target(rel)
            if target is None or "/csrc/" in target:
                continue
            files[target] = tar.extractfile(member).read()
    return files


def apply_patches(files, added=ADDED_FILES):
    """Applies ``PATCHES`` (each must match exactly once), adds the ``added`` files and the
    ``MARKER`` listing their ids."""
    for pid, path, old, new, why in PATCHES:
        text = files[path].decode()
        count = text.count(old)
        if count != 1:
            found = "does not match" if count == 0 else f"matches {count} times"
            raise SystemExit(f"error: patch {pid} for {path} ({why}) {found} the sources")
        files[path] = text.replace(old, new).encode()
    for target, (name, _) in added.items():
        files[target] = (HERE / name).read_bytes()
    files[MARKER] = marker_text(added).encode()


def patch_tree(root):
    """Applies ``PATCHES`` in place to the detectron2 v0.6 sources under ``root`` (a checkout
    of the v0.6 tag, e.g. one built with its compiled ``_C``), adds ``safe_pickle.py`` and the
    ``MARKER``; not the pure-Python ``_C.py``. Files are written only if every patch matches."""
    root = Path(root)
    if (root / MARKER).is_file():
        if (root / MARKER).read_text() == marker_text(_tree_added()):
            print(f"{root / 'detectron2'} already has these patches")
            return
        raise SystemExit(f"error: {root / MARKER} exists: these sources were patched by another "
                         "version of build_wheel.py; start again from v0.6's sources")
    paths = {path for _, path, *_ in PATCHES}
    missing = sorted(p for p in paths if not (root / p).is_file())
    if missing:
        raise SystemExit(f"error: {root} is not detectron2 v0.6's source folder "
                         f"(no {', '.join(missing)})")
    files = {path: (root / path).read_bytes() for path in paths}
    apply_patches(files, _tree_added())
    for path, data in files.items():
        (root / path).write_bytes(data)
    print(f"patched {root / 'detectron2'} ({len(patch_ids(_tree_added()))} patches); "
          "reinstall it if it is not installed in editable mode")


def _tree_added():
    return {k: v for k, v in ADDED_FILES.items() if k not in TREE_SKIPS}


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(files, out_dir):
    dist_info = f"detectron2-{VERSION}.dist-info"
    metadata = "\n".join(
        ["Metadata-Version: 2.1", "Name: detectron2", f"Version: {VERSION}",
         "Summary: detectron2 v0.6 "
         "(pure-Python build: compiled ops replaced by PyTorch/torchvision)",
         "Home-page: https://github.com/facebookresearch/detectron2", "License: Apache-2.0",
         "Requires-Python: >=3.8"]
        + [f"Requires-Dist: {r}" for r in REQUIRES]
    ) + "\n"
    wheel = (
        "Wheel-Version: 1.0\nGenerator: rtinst build_wheel.py\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
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
    """'compiled' (with a compiled ``_C`` and the patches of ``--patch-tree``), 'current'
    (this build), 'other' or None, for the detectron2 this Python would import."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    pkg = Path(list(spec.submodule_search_locations)[0])
    if any(pkg.glob("_C*.so")) or any(pkg.glob("_C*.pyd")):
        marker = pkg.parent / MARKER
        if marker.is_file() and marker.read_text() == marker_text(_tree_added()):
            return "compiled"
        return "compiled, unpatched"
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
    p.add_argument("--patch-tree", metavar="DIR",
                   help="instead: patch the detectron2 v0.6 sources in DIR (a checkout of the "
                        "v0.6 tag that you compile yourself) in place")
    args = p.parse_args(argv)
    if args.patch_tree:
        patch_tree(args.patch_tree)
        return 0

    if args.install:
        state = installed_state()
        if state == "compiled":
            print("detectron2 with a compiled _C and rtinst's patches is already installed: "
                  "leaving it alone.")
            return 0
        if state == "compiled, unpatched":
            print("replacing the installed detectron2 with a compiled _C: it lacks rtinst's "
                  "patches (to keep a compiled build, patch its v0.6 sources with "
                  "--patch-tree DIR and reinstall it)")
        if state == "current":
            print("detectron2 (pure-Python build) is already installed and current.")
            return 0

    sdist = find_sdist(args.sdist, args.find_links, args.cache_dir)
    files = read_sources(sdist)
    apply_patches(files)
    files["detectron2/PURE_BUILD"] = build_id().encode()
    wheel = write_wheel(files, args.out or args.cache_dir)
    print(f"built {wheel}")
    if args.install:
        subprocess.check_call(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--force-reinstall", "-q",
             str(wheel)]
        )
        print("installed detectron2", VERSION)
    return 0


if __name__ == "__main__":
    sys.exit(main())
