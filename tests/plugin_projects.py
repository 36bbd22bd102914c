"""A method package written into a temporary ``projects/<Name>/<package>/`` and installed as a
separate distribution would be (an entry point of the group ``rtinst.methods``), so that
subprocesses (``train_net.py``, the tools) import it as they import any installed method: what
the plug-in tests use to show a method joins without any file of rtinst changing."""
import os
import subprocess
import sys

from rtinst.methods import ENTRY_POINT_GROUP
from train_net_runner import ROOT

PYPROJECT = '''
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "rtinst-{package}"
version = "0.0.1"

[project.entry-points."{group}"]
{package} = "{package}"

[tool.setuptools]
packages = ["{package}"]
'''


def install_project(root, name, package, source):
    """Writes ``source`` as ``root/projects/<name>/<package>/__init__.py`` with its
    ``pyproject.toml`` and installs it into ``root/site``; returns (project folder, environment
    whose PYTHONPATH holds the installation)."""
    project = root / "projects" / name
    (project / package).mkdir(parents=True)
    (project / package / "__init__.py").write_text(source)
    (project / "pyproject.toml").write_text(
        PYPROJECT.format(package=package, group=ENTRY_POINT_GROUP))
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(site), str(project)],
                   check=True, capture_output=True, text=True, timeout=300)
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return project, {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run(args, env, cwd=ROOT):
    """``python *args`` in ``cwd`` (the repository) with ``env``."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
