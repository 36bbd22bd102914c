"""A ``DetectionCheckpointer`` that never executes code from a checkpoint and fails clearly.

* ``.pth`` files load with ``torch.load(weights_only=True)``; ``.pkl`` files (Detectron2 /
  Caffe2 model-zoo format) and pycls's ``.pyth`` through Detectron2's own loader, which our
  build makes read them with ``detectron2.utils.safe_pickle`` (numpy arrays and plain
  containers only) and ``weights_only=True``, keeping its Caffe2 / pycls name matching;
* a missing, empty or unreadable file, a file that is not a checkpoint, or a checkpoint that
  matches none of the model's parameters (``FrozenBatchNorm2d``'s statistics, which Detectron2
  fills in when absent, do not count; they are kept as they were) raises an error naming it;
* a checkpoint loading into a model whose class a method registered a converter for
  (``register_method(checkpoint_converters=...)``, e.g. YOLACT's for the reference's files) is
  converted first;
* ``resume_or_load`` with nothing to resume from says so, naming the folder;
* checkpoints and the ``last_checkpoint`` tag are written to a temporary file and renamed, so a
  job killed while saving leaves the previous checkpoint and tag intact for ``--resume`` (fvcore
  writes in place: a kill could leave an empty tag or a truncated checkpoint).
"""
import contextlib
import logging
import os
import pickle

import numpy as np
import torch
from detectron2.checkpoint import DetectionCheckpointer, detection_checkpoint
from detectron2.layers import FrozenBatchNorm2d
from detectron2.utils.file_io import PathManager

from ..errors import CheckpointError
from ..methods import METHODS

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _replaced_atomically(path, mode):
    """A file opened for writing at a temporary path next to ``path`` and renamed over it once
    written and synced (atomic on POSIX): readers see the old content or the new, never a part.
    An exception while writing leaves ``path`` untouched."""
    tmp = f"{path}.tmp"
    with open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class _AtomicWrites:
    """A path manager whose writes to local files go through ``_replaced_atomically``; reads
    and remote paths go to ``base``. fvcore's ``Checkpointer.save`` and ``tag_last_checkpoint``
    write through ``self.path_manager.open``."""

    def __init__(self, base):
        self._base = base

    def __getattr__(self, name):
        return getattr(self._base, name)

    def open(self, path, mode="r", **kwargs):
        if "w" in mode and os.path.isdir(os.path.dirname(path) or "."):
            return _replaced_atomically(path, mode)
        return self._base.open(path, mode, **kwargs)


class SafeCheckpointer(DetectionCheckpointer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.path_manager = _AtomicWrites(self.path_manager)

    def get_checkpoint_file(self):
        path = super().get_checkpoint_file()
        if path and os.path.normpath(path) == os.path.normpath(self.save_dir):
            tag = os.path.join(self.save_dir, "last_checkpoint")
            raise CheckpointError(
                f"{tag} is empty (left by a job killed while saving?): write the name of one of "
                "the checkpoints next to it (e.g. model_0000099.pth) into it, or delete it to "
                "start from MODEL.WEIGHTS"
            )
        return path

    def load(self, path, *args, **kwargs):
        if path:
            path = _fetch_or_fail(path) if "://" in path else path
            if not os.path.isfile(path):
                raise CheckpointError(f"checkpoint file not found: {path}")
        try:
            return super().load(path, *args, **kwargs)
        except CheckpointError as e:
            if path in str(e):
                raise
            raise CheckpointError(f"{path}: {e}") from e

    def _load_file(self, filename):
        if os.path.getsize(filename) == 0:
            raise CheckpointError(f"{filename} is empty (0 bytes): not a checkpoint")
        try:
            if filename.endswith((".pkl", ".pyth")):  # Detectron2 converts their names
                _require_safe_detectron2(filename)
                data = super()._load_file(filename)
            else:
                data = torch.load(filename, map_location=torch.device("cpu"), weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError,
                AssertionError) as e:
            reason = str(e) or type(e).__name__
            raise CheckpointError(f"cannot load checkpoint {filename}: {reason}") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{filename} is not a checkpoint: it holds a {type(data).__name__}")
        if "model" not in data:
            if not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
                raise CheckpointError(f"{filename} is not a checkpoint: no 'model' state dict in it")
            data = {"model": data}  # a bare state_dict
        return data

    def _load_model(self, checkpoint):
        convert = _checkpoint_converter(self.model)
        if convert is not None and isinstance(checkpoint.get("model"), dict):
            checkpoint["model"] = convert(checkpoint["model"])
        frozen_stats = _frozen_bn_statistics(self.model)
        incompatible = super()._load_model(checkpoint)
        missing = set(incompatible.missing_keys)
        filled = _restore_unloaded_statistics(frozen_stats, missing)
        not_loaded = missing | filled | {k for k, *_ in incompatible.incorrect_shapes}
        loaded = [
            k for k in self.model.state_dict()
            if k not in not_loaded and not k.endswith("num_batches_tracked")
        ]
        if not loaded:
            raise CheckpointError(
                "the checkpoint matches none of the model's parameters (wrong model or config?); "
                f"checkpoint keys start with: {sorted(checkpoint.get('model', {}))[:5]}"
            )
        return incompatible

    def resume_or_load(self, path, *, resume=True):
        if resume and not self.has_checkpoint():
            logger.warning(
                "resume: no checkpoint to resume from in %s (it has no last_checkpoint file): "
                "starting from %s", self.save_dir or ".",
                f"MODEL.WEIGHTS {path}" if path else "random weights (MODEL.WEIGHTS is empty)",
            )
        return super().resume_or_load(path, resume=resume)


def _checkpoint_converter(model):
    """The ``convert(state_dict)`` a method registered for ``model``'s class, or None."""
    name = type(model).__name__
    return next((m.checkpoint_converters[name] for m in METHODS.values()
                 if name in m.checkpoint_converters), None)


def _require_safe_detectron2(filename):
    """A ``CheckpointError`` unless Detectron2's loader is rtinst's build (stock v0.6 reads .pkl
    files with ``pickle.load``, which runs any callable a file names)."""
    if not hasattr(detection_checkpoint, "safe_pickle"):
        raise CheckpointError(
            f"refusing to read {filename}: this detectron2 reads .pkl files with pickle.load, "
            "which can run code; install rtinst's detectron2 build (scripts/setup.sh)"
        )


def _frozen_bn_statistics(model):
    """{module: (running_mean, running_var) copies} of the model's ``FrozenBatchNorm2d``s."""
    return {
        name: (module, module.running_mean.clone(), module.running_var.clone())
        for name, module in model.named_modules()
        if isinstance(module, FrozenBatchNorm2d)
    }


def _restore_unloaded_statistics(frozen_stats, missing):
    """Detectron2's ``FrozenBatchNorm2d`` fills running statistics absent from a checkpoint
    with 0 / 1 (for old checkpoints that stored only the affine part), which wipes e.g. the
    backbone's ImageNet statistics and counts as loaded. Where the checkpoint lacks even the
    module's weight and bias, the module was not in it: its statistics are put back, and their
    keys returned as not loaded."""
    restored = set()
    for name, (module, mean, var) in frozen_stats.items():
        prefix = f"{name}." if name else ""
        if {f"{prefix}weight", f"{prefix}bias"} <= missing:
            module.running_mean.copy_(mean)
            module.running_var.copy_(var)
            restored |= {f"{prefix}running_mean", f"{prefix}running_var"}
    return restored


def _fetch_or_fail(url):
    try:
        return PathManager.get_local_path(url)
    except Exception as e:  # iopath raises many kinds of network errors
        raise CheckpointError(
            f"cannot fetch checkpoint {url} ({type(e).__name__}: {e}); "
            "download it elsewhere and set MODEL.WEIGHTS to the local file"
        ) from e
