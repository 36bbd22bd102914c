"""projects/YOLACT/tools/seeded_weights.py, which is not a package, loaded from its path for the
YOLACT and YolactEdge reference tests."""
import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[1] / "projects/YOLACT/tools/seeded_weights.py"


def load_seeded_weights():
    spec = importlib.util.spec_from_file_location("seeded_weights", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
