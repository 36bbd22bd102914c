"""A ``DetectionCheckpointer`` that never executes code from a checkpoint and fails clearly.

* ``.pth`` files load with ``torch.load(weights_only=True)``;
* ``.pkl`` files (Detectron2 / Caffe2 model-zoo format) load with an unpickler that only
  rebuilds numpy arrays and plain containers;
* a missing or unreadable file, a file that is not a checkpoint, or a checkpoint that matches
  none of the model's parameters raises an error naming the file;
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
from detectron2.utils.file_io import PathManager

logger = logging.getLogger(__name__)

_PKL_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
    ("builtins", "set"),
}


class CheckpointError(RuntimeError):
    """A checkpoint file could not be used; the message names the file and the reason."""


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _PKL_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load '{module}.{name}': only numpy arrays and plain containers are allowed"
        )


class _ArraysOnlyPickle:
    """Stands in for the ``pickle`` module inside detectron2's checkpoint loader."""

    @staticmethod
    def load(f, encoding="ASCII"):
        return _ArraysOnlyUnpickler(f, encoding=encoding).load()


@contextlib.contextmanager
def _arrays_only_pickle():
    original = detection_checkpoint.pickle
    detection_checkpoint.pickle = _ArraysOnlyPickle
    try:
        yield
    finally:
        detection_checkpoint.pickle = original


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
        try:
            if filename.endswith(".pkl"):
                with _arrays_only_pickle():
                    data = super()._load_file(filename)
            else:
                data = torch.load(filename, map_location=torch.device("cpu"), weights_only=True)
        except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"cannot load checkpoint {filename}: {e}") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{filename} is not a checkpoint: it holds a {type(data).__name__}")
        if "model" not in data:
            if not all(isinstance(v, (torch.Tensor, np.ndarray)) for v in data.values()):
                raise CheckpointError(f"{filename} is not a checkpoint: no 'model' state dict in it")
            data = {"model": data}  # a bare state_dict
        return data

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        not_loaded = set(incompatible.missing_keys) | {k for k, *_ in incompatible.incorrect_shapes}
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


def _fetch_or_fail(url):
    try:
        return PathManager.get_local_path(url)
    except Exception as e:  # iopath raises many kinds of network errors
        raise CheckpointError(
            f"cannot fetch checkpoint {url} ({type(e).__name__}: {e}); "
            "download it elsewhere and set MODEL.WEIGHTS to the local file"
        ) from e
