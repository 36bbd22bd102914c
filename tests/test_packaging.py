"""rtinst installs honestly: setup.py declares what the code imports, a built wheel works outside
the repository, and a detectron2 without rtinst's patches stops ``import rtinst`` with one line.

The detectron2 tests need the sdist that ``third_party/detectron2_py/build_wheel.py`` downloads
(``pb1-detectron2-0.6.tar.gz`` in ``~/.cache/rtinst/``, where ``bash scripts/setup.sh`` leaves
it, or a wheelhouse folder); they are skipped, saying so, without it.
"""
import ast
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD_WHEEL = ROOT / "third_party" / "detectron2_py" / "build_wheel.py"
METHOD_PACKAGES = ["blendmask", "centermask", "blitzmask", "yolact", "mobileinst"]
ONE_LINE = re.compile(
    r"^rtinst\.errors\.Detectron2BuildError: rtinst needs detectron2 0\.6 with "
    r"rtinst's patches \(missing: (?P<missing>[a-z0-9, -]+); in (?P<folder>\S+)\): run bash "
    r"scripts/setup\.sh or python third_party/detectron2_py/build_wheel\.py --install$"
)


def _load(path, name):
    """A module from a file (build_wheel.py is a script)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def build_wheel():
    return _load(BUILD_WHEEL, "rtinst_test_build_wheel")


@pytest.fixture
def d2check():
    from rtinst.utils import detectron2_build

    return detectron2_build


def _setup_py_lists():
    """INSTALL_REQUIRES and EXTRAS_REQUIRE of setup.py (literals; setup() is not run)."""
    found = {}
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("INSTALL_REQUIRES", "EXTRAS_REQUIRE"):
                found[node.targets[0].id] = ast.literal_eval(node.value)
    return found["INSTALL_REQUIRES"], found["EXTRAS_REQUIRE"]


def _requirement_name(requirement):
    return _normalize(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))


def _normalize(name):
    return re.sub(r"[-_.]+", "-", name).lower()


# --------------------------------------------------------------------------- install_requires
def _local_packages():
    names = {"rtinst", "blendmask", "centermask", "blitzmask"}
    return names | {init.parent.name for init in ROOT.glob("projects/*/*/__init__.py")}


def _sources():
    """rtinst, the method packages, tools/*.py and train_net.py."""
    files = [ROOT / "train_net.py", *sorted(ROOT.glob("tools/*.py"))]
    for package in ["rtinst", "blendmask", "centermask", "blitzmask"]:
        files += sorted((ROOT / package).rglob("*.py"))
    for init in sorted(ROOT.glob("projects/*/*/__init__.py")):
        files += sorted(init.parent.rglob("*.py"))
    return files


def _absolute_imports(path):
    """(line, top-level module) of every absolute import in ``path``, at any depth, in line
    order."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return sorted(found)


def _third_party_imports():
    """{top-level module: [files importing it]} for absolute imports that are neither the
    standard library nor rtinst's own packages."""
    local = _local_packages()
    found = {}
    for path in _sources():
        for _, top in _absolute_imports(path):
            if top in sys.stdlib_module_names or top in local or top == "__future__":
                continue
            found.setdefault(top, []).append(str(path.relative_to(ROOT)))
    return found


def test_install_requires_covers_the_third_party_imports():
    install_requires, extras = _setup_py_lists()
    declared = {_requirement_name(r) for r in install_requires}
    declared |= {_requirement_name(r) for reqs in extras.values() for r in reqs}
    distributions = importlib.metadata.packages_distributions()
    imports = _third_party_imports()
    assert {"torch", "detectron2", "numpy", "scipy", "trackeval"} <= set(imports)  # the scan works
    problems = []
    for module, files in sorted(imports.items()):
        dists = {_normalize(d) for d in distributions.get(module, [])}
        if not dists:
            problems.append(f"{module} (not installed here; imported by {files[0]})")
        elif not dists & declared:
            problems.append(f"{module} -> {'/'.join(sorted(dists))} (imported by {files[0]})")
    assert not problems, "setup.py does not declare: " + "; ".join(problems)


def test_setup_py_pins_detectron2_0_6_and_accepts_our_build(build_wheel):
    pip_packaging = pytest.importorskip("pip._vendor.packaging.requirements")
    install_requires, _ = _setup_py_lists()
    (pin,) = [r for r in install_requires if _requirement_name(r) == "detectron2"]
    specifier = pip_packaging.Requirement(pin).specifier
    assert str(specifier) == "==0.6"
    assert specifier.contains(build_wheel.VERSION)  # 0.6+purepy: PEP 440 local label
    assert not specifier.contains("0.6.1") and not specifier.contains("0.5")


# --------------------------------------------------------------------------- the patch check
def test_the_ids_rtinst_needs_are_ids_of_the_build(build_wheel, d2check):
    ids = build_wheel.patch_ids()
    assert len(ids) == len(set(ids))
    assert {need.id for need in d2check.NEEDED} <= set(ids)
    assert "pure-python-ops" not in build_wheel.patch_ids(build_wheel._tree_added())


def test_this_environment_has_every_patch_of_the_build(build_wheel, d2check):
    folder = d2check._package_folder()
    assert folder is not None, "no detectron2 installed"
    listed = d2check._listed_patches(folder)
    assert listed == set(build_wheel.patch_ids()), (
        f"{folder} was built by another version of build_wheel.py: run "
        "python third_party/detectron2_py/build_wheel.py --install"
    )
    d2check.check_detectron2()


def _fake_detectron2(tmp_path, version="0.6", patches=None, ops="_C.py"):
    folder = tmp_path / "detectron2"
    folder.mkdir()
    (folder / "__init__.py").write_text(f'__version__ = "{version}"\n')
    if ops:
        (folder / ops).write_text("")
    if patches is not None:
        (folder / "_rtinst_patches.py").write_text(f"PATCHES = {tuple(patches)!r}\n")
    return folder


def _check_message(d2check, monkeypatch, folder):
    monkeypatch.setattr(d2check, "_package_folder", lambda: folder)
    with pytest.raises(d2check.Detectron2BuildError) as e:
        d2check.check_detectron2()
    from rtinst.errors import RtinstError

    assert isinstance(e.value, RuntimeError) and isinstance(e.value, RtinstError)
    message = str(e.value)
    assert "\n" not in message
    assert message.endswith(d2check.REMEDY)
    return message


def test_check_names_exactly_the_missing_patches(d2check, monkeypatch, tmp_path):
    needed = [need.id for need in d2check.NEEDED if need.when()]
    folder = _fake_detectron2(tmp_path, patches=[p for p in needed if p != "safe-pickle"])
    message = _check_message(d2check, monkeypatch, folder)
    assert f"(missing: safe-pickle; in {folder})" in message

    (folder / "_rtinst_patches.py").write_text(f"PATCHES = {tuple(needed)!r}\n")
    d2check.check_detectron2()  # all there: no error


def test_check_without_marker_version_or_detectron2(d2check, monkeypatch, tmp_path):
    folder = _fake_detectron2(tmp_path)  # stock v0.6 (plus a _C): no marker
    message = _check_message(d2check, monkeypatch, folder)
    assert "safe-pickle" in message and "pure-python-ops" not in message  # _C.py is there

    (tmp_path / "other").mkdir()
    other = _fake_detectron2(tmp_path / "other", version="0.5",
                             patches=[need.id for need in d2check.NEEDED])
    assert "not detectron2 0.5 at" in _check_message(d2check, monkeypatch, other)

    assert "this Python has no detectron2" in _check_message(d2check, monkeypatch, None)


def test_a_compiled_ops_module_counts_as_the_ops(d2check, tmp_path):
    folder = _fake_detectron2(tmp_path, patches=[], ops="_C.cpython-311-x86_64-linux-gnu.so")
    _, missing = d2check.missing_patches(folder)
    assert "pure-python-ops" not in missing and "safe-pickle" in missing
    (folder / "_C.cpython-311-x86_64-linux-gnu.so").unlink()
    assert "pure-python-ops" in d2check.missing_patches(folder)[1]


def test_patches_needed_only_in_some_environments(d2check, monkeypatch):
    needs = {need.id: need for need in d2check.NEEDED}
    versions = {"pillow": (9, 5), "torch": (2, 5, 1)}
    monkeypatch.setattr(d2check, "_version_of", versions.get)
    assert not needs["pillow-bilinear"].when() and needs["pyth-weights-only"].when()
    versions.update(pillow=(10, 0), torch=(2, 6))
    assert needs["pillow-bilinear"].when() and not needs["pyth-weights-only"].when()
    versions.clear()  # versions unknown: needed
    assert needs["pillow-bilinear"].when() and needs["pyth-weights-only"].when()


# --------------------------------------------------------------------------- real v0.6 sources
def _sdist(build_wheel):
    places = [os.environ.get("RTINST_DETECTRON2_SDIST", ""),
              Path.home() / ".cache" / "rtinst" / build_wheel.SDIST_NAME,
              ROOT / "wheelhouse" / build_wheel.SDIST_NAME]
    for place in places:
        if place and Path(place).is_file():
            return Path(place)
    pytest.skip(f"{build_wheel.SDIST_NAME} (detectron2 v0.6's sources) not found in "
                "~/.cache/rtinst/ or wheelhouse/ (bash scripts/setup.sh downloads it; or set "
                "RTINST_DETECTRON2_SDIST)")


@pytest.fixture
def stock_detectron2(build_wheel, tmp_path):
    """detectron2 v0.6's unpatched sources, plus rtinst's pure-Python ``_C.py`` so that they
    import (a stock v0.6 as a user might have it): the folder to put on PYTHONPATH."""
    root = tmp_path / "stock"
    for rel, data in build_wheel.read_sources(_sdist(build_wheel)).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    shutil.copy(BUILD_WHEEL.parent / "_C.py", root / "detectron2" / "_C.py")
    return root


def _import_rtinst(pythonpath, cwd, code="import rtinst"):
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_import_rtinst_with_stock_detectron2_stops_with_one_line(stock_detectron2, tmp_path):
    result = _import_rtinst(stock_detectron2, tmp_path)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    match = ONE_LINE.match(last)
    assert match, result.stderr
    assert match["folder"] == str(stock_detectron2 / "detectron2")
    missing = match["missing"].split(", ")
    assert {"safe-pickle", "16-bit-images", "torchvision-deform-conv", "cpu-ddp"} <= set(missing)
    assert f'File "{stock_detectron2}' not in result.stderr  # stopped before detectron2 ran


@pytest.mark.parametrize("script", [
    "train_net.py", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("tools/*.py")),
])
def test_entry_scripts_import_rtinst_before_detectron2(script):
    """So that the check of ``import rtinst`` runs before any detectron2 code: in the file's
    line order, the first import of rtinst (any of its modules) comes before the first of
    detectron2, at the top or inside a function."""
    first = {}
    for line, top in _absolute_imports(ROOT / script):
        first.setdefault(top, line)
    if "detectron2" in first:
        assert first.get("rtinst", float("inf")) < first["detectron2"], (
            f"{script}:{first['detectron2']} imports detectron2 before rtinst")


@pytest.mark.slow
def test_patch_tree_makes_stock_sources_work(build_wheel, stock_detectron2, tmp_path):
    """What a user with a compiled v0.6 does: patch its sources with --patch-tree."""
    subprocess.run([sys.executable, str(BUILD_WHEEL), "--patch-tree", str(stock_detectron2)],
                   check=True, capture_output=True)
    result = _import_rtinst(
        stock_detectron2, tmp_path,
        "import rtinst, detectron2, detectron2.utils.safe_pickle; print(detectron2.__file__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(stock_detectron2 / "detectron2" / "__init__.py")


def test_build_wheel_replaces_only_an_unpatched_compiled_detectron2(build_wheel, tmp_path):
    folder = _fake_detectron2(tmp_path, ops="_C.cpython-311-x86_64-linux-gnu.so")
    code = "import build_wheel; print(build_wheel.installed_state())"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{BUILD_WHEEL.parent}"}

    def state():
        return subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    assert state() == "compiled, unpatched"
    (folder / "_rtinst_patches.py").write_text(build_wheel.marker_text(build_wheel._tree_added()))
    assert state() == "compiled"


# --------------------------------------------------------------------------- a real install
def _tracked_files():
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
             "setup.py", "pyproject.toml", "rtinst", "blendmask", "centermask", "blitzmask",
             "projects"],
            cwd=ROOT, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"cannot list the repository's files with git: {e}")
    return [rel for rel in out.split("\0") if rel and (ROOT / rel).is_file()]


INSTALLED_CHECK = r"""
import importlib, importlib.metadata as md, json, sys
from pip._vendor.packaging.requirements import Requirement
out = {"modules": {}}
for name in ["rtinst", *sys.argv[1:]]:
    out["modules"][name] = importlib.import_module(name).__file__
out["entry_points"] = sorted(ep.name for ep in md.entry_points(group="rtinst.methods"))
out["dist"] = str(md.distribution("rtinst").locate_file(""))
unmet = []
for line in md.requires("rtinst"):
    req = Requirement(line)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in ["", "export", "test"]):
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        unmet.append(f"{line} (not installed)")
        continue
    if not req.specifier.contains(version, prereleases=True):
        unmet.append(f"{line} (installed: {version})")
out["requires"] = md.requires("rtinst")
out["unmet"] = unmet
print(json.dumps(out))
"""


@pytest.mark.slow
def test_a_built_wheel_installs_and_imports_outside_the_repository(tmp_path):
    """``pip wheel`` of a copy of the repository, installed with --no-deps into a fresh venv that
    sees this environment's packages (a .pth line: not its .pth files, so not the editable
    rtinst), imported from a folder that is not the repository."""
    source = tmp_path / "src"
    for rel in _tracked_files():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, source / rel)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1")
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path / "wheels"), str(source)], cwd=tmp_path, env=env, check=True,
                   capture_output=True, timeout=300)
    (wheel,) = (tmp_path / "wheels").glob("rtinst-*.whl")

    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    python = target / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                                "['purelib'])"], check=True, capture_output=True, text=True,
                               env=env).stdout.strip())
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "rtinst_test_base.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    subprocess.run([*pip, "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)

    result = subprocess.run([python, "-c", INSTALLED_CHECK, *METHOD_PACKAGES], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    for name, file in out["modules"].items():
        assert Path(file).is_relative_to(site), f"{name} imported from {file}, not the install"
    assert Path(out["dist"]) == site
    assert set(METHOD_PACKAGES) <= set(out["entry_points"])
    install_requires, _ = _setup_py_lists()
    assert set(install_requires) <= set(out["requires"])
    assert not out["unmet"], f"installed rtinst's requirements not met here: {out['unmet']}"
