"""Hostile files for the safe-loading tests: pickles whose unpickling would create a file."""
import pickle
from pathlib import Path


class CreatesFile:
    """Unpickled by a plain ``pickle.load``, this creates ``path`` (``open(path, "w")``)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def code_running_pkl(folder):
    """(a .pkl checkpoint in ``folder`` whose unpickling would create a file, that file)."""
    marker, path = Path(folder) / "CREATED_BY_PICKLE", Path(folder) / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"weight": CreatesFile(marker)}, "__author__": "x"}))
    return path, marker
