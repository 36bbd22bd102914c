"""Whether the installed detectron2 is v0.6 with the source patches rtinst needs.

rtinst runs on detectron2 v0.6 as ``third_party/detectron2_py/build_wheel.py`` builds it (what
``bash scripts/setup.sh`` installs): v0.6's sources with small patches, each with an id. The
build lists the ids it applied in ``detectron2/_rtinst_patches.py`` (``PATCHES = (...)``; a
compiled detectron2 whose v0.6 sources ``build_wheel.py --patch-tree`` patched has it too). A
stock v0.6 (or any other detectron2) has no such file. ``import rtinst`` calls
``check_detectron2()``, which reads that file without importing detectron2 and raises
``Detectron2BuildError``, one line naming the missing ids and how to get them, where a patch
rtinst needs is missing, instead of a traceback from deep inside detectron2 (or, for the
security and data patches, no error at all).

This module and ``rtinst.errors`` import only the standard library.

The ids rtinst needs (``NEEDED``), some only where the environment makes v0.6 fail:

====================== ======================== =============================================
id                     needed                   why
====================== ======================== =============================================
pillow-bilinear        Pillow >= 10             ``detectron2.data.transforms`` fails to import
                                                (``Image.LINEAR`` is a default argument)
sample-sorted-set      Python >= 3.11           the test loader's ``MapDataset`` crashes when
                                                rtinst's mapper skips an unreadable image
no-pkg-resources       no ``pkg_resources``     ``detectron2.model_zoo`` (``zoo:`` configs,
                                                rtinst.engine) fails to import
cpu-ddp                always                   ``train_net.py --num-gpus N`` on CPU (gloo)
safe-pickle            always                   ``.pkl`` checkpoints and proposal files would
                                                be read with ``pickle.load`` (runs code)
pyth-weights-only      torch < 2.6              pycls ``.pyth`` files: full unpickler
safe-zoo-yaml          always                   rtinst reads configs with safe YAML: every
                                                ``zoo:`` RetinaNet config would be refused
16-bit-images          always                   16-bit / float images were read all white
torchvision-deform-    always                   YOLACT++'s DCNv2 blocks (``ModulatedDeform
conv                                            Conv``): no kernel on CPU / in the pure build
pure-python-ops        no ``_C`` module         ``detectron2._C`` (deformable convolution,
                                                COCO evaluation...): compiled or ``_C.py``
====================== ======================== =============================================

Not needed (the build has them; rtinst works without): ``export-without-caffe2`` (rtinst never
imports ``detectron2.export`` / ``detectron2.utils.analysis``), ``torch2-lr-schedulers``
(rtinst's schedulers, Detectron2's ``LRMultiplier`` and ``LookForwardScheduler``, derive from
``_LRScheduler``, which v0.6's hook saves), ``quiet-jit-script`` and ``quiet-collect-env``
(warnings only), ``plain-log-files`` (colour codes in ``log.txt``), ``numpy-int`` (the class
histogram log table, whose error v0.6 swallows).
"""
import ast
import importlib.metadata
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Tuple

from ..errors import Detectron2BuildError

__all__ = ["Detectron2BuildError", "NEEDED", "check_detectron2", "missing_patches"]

MARKER = "_rtinst_patches.py"  # in the detectron2 package folder
REMEDY = "run bash scripts/setup.sh or python third_party/detectron2_py/build_wheel.py --install"


def _release(version):
    match = re.match(r"\d+(\.\d+)*", version or "")
    return tuple(int(x) for x in match.group(0).split(".")) if match else None


def _version_of(distribution):
    try:
        return _release(importlib.metadata.version(distribution))
    except importlib.metadata.PackageNotFoundError:
        return None


def _at_least(distribution, minimum):
    """True where ``distribution`` is ``minimum`` or later, or its version is unknown."""
    version = _version_of(distribution)
    return version is None or version >= minimum


def _before(distribution, limit):
    """True where ``distribution`` is older than ``limit``, or its version is unknown."""
    version = _version_of(distribution)
    return version is None or version < limit


def _always():
    return True


@dataclass(frozen=True)
class Need:
    """A patch id of build_wheel.py that rtinst needs where ``when()`` is true."""

    id: str
    when: Callable[[], bool] = _always


NEEDED = (
    Need("pillow-bilinear", lambda: _at_least("pillow", (10,))),
    Need("sample-sorted-set", lambda: sys.version_info >= (3, 11)),
    Need("no-pkg-resources", lambda: importlib.util.find_spec("pkg_resources") is None),
    Need("cpu-ddp"),
    Need("safe-pickle"),
    Need("pyth-weights-only", lambda: _before("torch", (2, 6))),
    Need("safe-zoo-yaml"),
    Need("16-bit-images"),
    Need("torchvision-deform-conv"),
    Need("pure-python-ops"),  # or any other detectron2/_C module: see missing_patches
)


def _package_folder():
    """The folder of the detectron2 package this Python would import (None: none), found
    without importing it (or of the one imported already)."""
    module = sys.modules.get("detectron2")
    if getattr(module, "__file__", None):
        return Path(module.__file__).parent
    try:
        spec = importlib.util.find_spec("detectron2")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _listed_patches(folder):
    """The ids in ``folder/_rtinst_patches.py`` (empty where it is missing or unreadable)."""
    try:
        tree = ast.parse((folder / MARKER).read_text())
    except (OSError, SyntaxError, ValueError):
        return frozenset()
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "PATCHES"):
            try:
                return frozenset(str(x) for x in ast.literal_eval(node.value))
            except (ValueError, TypeError):
                return frozenset()
    return frozenset()


def _version_in(folder):
    try:
        text = (folder / "__init__.py").read_text()
    except OSError:
        return None
    match = re.search(r"""^__version__\s*=\s*["']([^"']+)["']""", text, re.M)
    return match.group(1) if match else None


def _has_ops_module(folder):
    """Whether ``detectron2._C`` is there: compiled, or a pure-Python stand-in."""
    return any(folder.glob("_C*.so")) or any(folder.glob("_C*.pyd")) or (folder / "_C.py").is_file()


def missing_patches(folder=None) -> Tuple[Optional[Path], Tuple[str, ...]]:
    """(the detectron2 package folder, the ids of ``NEEDED`` it lacks here); (None, all the
    ids needed here) where there is no detectron2."""
    folder = _package_folder() if folder is None else Path(folder)
    needed = [need.id for need in NEEDED if need.when()]
    if folder is None:
        return None, tuple(needed)
    listed = _listed_patches(folder)
    if "pure-python-ops" not in listed and _has_ops_module(folder):
        listed |= {"pure-python-ops"}
    return folder, tuple(pid for pid in needed if pid not in listed)


def check_detectron2():
    """Raises ``Detectron2BuildError`` (one line: what is missing, how to get it) unless the
    detectron2 that this Python imports is v0.6 with every patch rtinst needs here."""
    folder, missing = missing_patches()
    if folder is None:
        raise Detectron2BuildError(
            f"rtinst needs detectron2 0.6 with rtinst's patches, and this Python has no "
            f"detectron2: {REMEDY}"
        )
    version = _version_in(folder)
    if version != "0.6":
        found = f"detectron2 {version or '(no version)'} at {folder}"
        raise Detectron2BuildError(
            f"rtinst needs detectron2 0.6 with rtinst's patches, not {found}: {REMEDY}"
        )
    if missing:
        raise Detectron2BuildError(
            f"rtinst needs detectron2 0.6 with rtinst's patches (missing: {', '.join(missing)}; "
            f"in {folder}): {REMEDY}"
        )
