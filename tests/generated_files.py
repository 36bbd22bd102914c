"""Reading back what a dataset generator wrote (the shapes images and videos)."""
import json
import os


def file_bytes(root):
    """{relative path: bytes} of every file under ``root``."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = f.read()
    return found


def annotations(root, split):
    """The parsed ``<root>/annotations/<split>.json``."""
    with open(os.path.join(root, "annotations", f"{split}.json")) as f:
        return json.load(f)
