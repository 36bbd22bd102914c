"""How rtinst's modules import each other, and what importing rtinst and starting its tools loads.

* No import cycle among ``rtinst.*``: every ``.py`` under ``rtinst/`` is parsed with ``ast``
  (imports at module level and inside functions both count), the module graph is built and its
  strongly connected components are searched; a cycle is named module by module.
* ``import rtinst`` loads none of the heavy optional libraries (matplotlib, scipy, trackeval,
  onnx, onnxruntime): the modules that need them import them when used.
* ``train_net.py --help`` / ``tools/demo.py --help`` and their argument errors answer without
  importing torch, Detectron2 or rtinst.

The graph: importing ``rtinst.a.b`` from module M is an edge M -> ``rtinst.a.b`` and M -> every
package above it (``rtinst.a``, whose ``__init__`` runs first) that is not a package above M
(those are already being imported when M runs). ``from pkg import name`` where ``pkg`` is a
package above M (``from . import x``, ``from .. import y``, ``from rtinst import z``) is an edge to
where ``name`` comes from: the submodule ``pkg.name``, or the module that ``pkg/__init__.py``
imports ``name`` from (followed through further re-exports), or ``pkg`` itself if its
``__init__`` defines ``name``. So a package's ``__init__`` importing its own submodules is not a
cycle by itself, but a submodule reaching a sibling through the package is an edge to that
sibling.
"""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "rtinst"
HEAVY = ("matplotlib", "scipy", "trackeval", "onnx", "onnxruntime")


def module_files(package_dir):
    """{module name: path} of every ``.py`` under ``package_dir`` (a package's is its
    ``__init__.py``), and the set of names that are packages."""
    modules, packages = {}, set()
    base = package_dir.parent
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
            packages.add(".".join(parts))
        modules[".".join(parts)] = path
    return modules, packages


def ancestors(name):
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _package_of(module, packages):
    return module if module in packages else module.rpartition(".")[0]


def _absolute(module, packages, node):
    """The module an ``ImportFrom`` node names, relative imports resolved."""
    if not node.level:
        return node.module
    base = _package_of(module, packages)
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _imports(tree):
    """Every ``Import``/``ImportFrom`` node, at any depth, except under ``if TYPE_CHECKING:``."""
    found = []

    def visit(node):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


class ImportGraph:
    def __init__(self, package_dir):
        self.modules, self.packages = module_files(package_dir)
        self.trees = {m: ast.parse(p.read_text(), str(p)) for m, p in self.modules.items()}
        self.root = package_dir.name
        self.edges = {m: set() for m in self.modules}
        for module in self.modules:
            for target in self._targets(module):
                if target != module and target in self.modules:
                    self.edges[module].add(target)

    def _inside(self, name):
        return name == self.root or name.startswith(self.root + ".")

    def _with_parents(self, module, target):
        """``target`` and the packages above it whose ``__init__`` importing it runs."""
        above_module = set(ancestors(module)) | ({module} if module in self.packages else set())
        return [a for a in ancestors(target) + [target] if a not in above_module]

    def origin(self, package, name, seen=()):
        """The module that ``from package import name`` takes ``name`` from."""
        if f"{package}.{name}" in self.modules:
            return f"{package}.{name}"
        if package not in self.packages or (package, name) in seen:
            return package
        seen = (*seen, (package, name))
        for node in self.trees[package].body:  # the names the __init__ imports at its top level
            if isinstance(node, ast.ImportFrom):
                source = _absolute(package, self.packages, node)
                for alias in node.names:
                    if (alias.asname or alias.name) == name and self._inside(source):
                        if source in self.packages:
                            return self.origin(source, alias.name, seen)
                        return source
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname == name and self._inside(alias.name):
                        return alias.name
        return package

    def _targets(self, module):
        above_module = set(ancestors(module)) | ({module} if module in self.packages else set())
        for node in _imports(self.trees[module]):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if self._inside(alias.name):
                        yield from self._with_parents(module, alias.name)
                continue
            source = _absolute(module, self.packages, node)
            if not self._inside(source):
                continue
            yield from self._with_parents(module, source)
            for alias in node.names:
                if source in above_module:
                    yield self.origin(source, alias.name)
                elif f"{source}.{alias.name}" in self.modules:
                    yield f"{source}.{alias.name}"

    def cycles(self):
        """The strongly connected components with more than one module (Tarjan), each as a
        cycle through it: ``[a, b, ..., a]``."""
        index, low, on_stack, stack, components = {}, {}, set(), [], []
        counter = [0]

        def strongconnect(v):  # iterative, so deep graphs do not hit the recursion limit
            work = [(v, iter(sorted(self.edges[v])))]
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on_stack.add(v)
            while work:
                node, children = work[-1]
                for w in children:
                    if w not in index:
                        index[w] = low[w] = counter[0]
                        counter[0] += 1
                        stack.append(w)
                        on_stack.add(w)
                        work.append((w, iter(sorted(self.edges[w]))))
                        break
                    if w in on_stack:
                        low[node] = min(low[node], index[w])
                else:
                    work.pop()
                    if work:
                        low[work[-1][0]] = min(low[work[-1][0]], low[node])
                    if low[node] == index[node]:
                        component = []
                        while True:
                            w = stack.pop()
                            on_stack.discard(w)
                            component.append(w)
                            if w == node:
                                break
                        if len(component) > 1:
                            components.append(sorted(component))

        for v in sorted(self.edges):
            if v not in index:
                strongconnect(v)
        return [self._cycle_through(c) for c in components]

    def _cycle_through(self, component):
        """A shortest cycle from the component's first module back to itself (breadth-first)."""
        members, start = set(component), component[0]
        previous, frontier = {start: None}, [start]
        while frontier:
            following = []
            for node in frontier:
                for w in sorted(self.edges[node] & members):
                    if w == start:
                        path = [node]
                        while previous[path[-1]] is not None:
                            path.append(previous[path[-1]])
                        return [*reversed(path), start]  # path ends at start
                    if w not in previous:
                        previous[w] = node
                        following.append(w)
            frontier = following
        return component


def _describe(cycles):
    return "\n".join(" -> ".join(c) for c in cycles)


def test_the_graph_resolves_relative_and_package_imports(tmp_path):
    """The rules above on a made-up package: ``from . import sub``, a name re-exported by the
    parent's ``__init__``, ``import pkg.sub`` and a cycle through two packages' ``__init__``."""
    pkg = tmp_path / "pkg"
    for folder in (pkg, pkg / "a", pkg / "b"):
        folder.mkdir()
    (pkg / "__init__.py").write_text("from .a import thing\nfrom . import b\n")
    (pkg / "a" / "__init__.py").write_text("from .impl import thing\nfrom .user import use\n")
    (pkg / "a" / "impl.py").write_text("thing = 1\n")
    (pkg / "a" / "user.py").write_text("from . import impl\nfrom pkg.a import thing\n")
    (pkg / "b" / "__init__.py").write_text("from .helper import helper\n")
    (pkg / "b" / "helper.py").write_text("def helper():\n    from ..a.impl import thing\n")
    graph = ImportGraph(pkg)
    assert graph.edges["pkg.a.user"] == {"pkg.a.impl"}  # not pkg.a: the names come from impl
    assert graph.edges["pkg.b.helper"] == {"pkg.a", "pkg.a.impl"}  # pkg.a's __init__ runs first
    assert graph.edges["pkg"] == {"pkg.a", "pkg.b"}
    assert graph.cycles() == []
    (pkg / "a" / "impl.py").write_text("import pkg.b.helper\nthing = 1\n")  # a -> b -> a
    cycles = ImportGraph(pkg).cycles()
    assert cycles == [["pkg.a", "pkg.a.impl", "pkg.b.helper", "pkg.a"]]


def test_rtinst_has_no_import_cycle():
    cycles = ImportGraph(ROOT / PACKAGE).cycles()
    assert not cycles, "import cycles among rtinst's modules:\n" + _describe(cycles)


def _run(code, *args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_importing_rtinst_loads_no_heavy_library():
    """Nor do the method packages that ``import rtinst`` imports (``load_methods``)."""
    result = _run("import rtinst, sys; print(sorted(m for m in %r if m in sys.modules))"
                  % (HEAVY,))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout


# what a tool's first lines may load: the standard library (and the tool's own stdlib-only parts)
SCRIPT_UNDER_TEST = """
import runpy, sys
sys.argv = {argv!r}
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as e:  # as the interpreter would: a message, then the exit code
    if not isinstance(e.code, (int, type(None))):
        print(e.code, file=sys.stderr)
    print(e.code if isinstance(e.code, int) else int(e.code is not None), file=sys.stderr)
print(sorted(m for m in ("torch", "detectron2", "rtinst", "cv2", "numpy") if m in sys.modules))
"""


def _run_tool(*argv):
    """``(exit code, stderr without it, the heavy modules loaded)`` of running ``argv`` as
    ``python argv...`` would, in a process that then reports what it imported."""
    result = _run(SCRIPT_UNDER_TEST.format(argv=list(argv)))
    *messages, code = result.stderr.strip().splitlines()
    return int(code), "\n".join(messages), result.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, ""),
    (["--no-such-option"], 2, "unrecognized arguments: --no-such-option"),
    (["--config-file", "absent.yaml"], 1, "error: config file not found: absent.yaml"),
    ([], 1, "error: config file not found: "),
])
def test_train_net_answers_help_and_argument_errors_without_torch(argv, code, message):
    got_code, stderr, loaded = _run_tool("train_net.py", *argv)
    assert (got_code, loaded) == (code, "[]"), stderr
    assert message in stderr


@pytest.mark.parametrize("argv, code, message", [
    (["--help"], 0, ""),
    (["--config-file", "c.yaml"], 2, "the following arguments are required: --input, --output"),
    (["--config-file", "absent.yaml", "--input", "x", "--output", "y"], 1,
     "demo.py: error: config file not found: absent.yaml"),
    (["--config-file", "c.yaml", "--input", "x", "--output", "y", "--max-frames", "0"], 2,
     "--max-frames must be >= 1"),
])
def test_demo_answers_help_and_argument_errors_without_torch(argv, code, message):
    got_code, stderr, loaded = _run_tool("tools/demo.py", *argv)
    assert (got_code, loaded) == (code, "[]"), stderr
    assert message in stderr


def test_the_help_lists_every_option():
    """Detectron2's options and rtinst's, as ``train_net.py --help`` prints them."""
    result = subprocess.run([sys.executable, "train_net.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in ("--config-file", "--resume", "--eval-only", "--num-gpus", "--num-machines",
                   "--machine-rank", "--dist-url", "--dataset", "--video-dataset", "opts"):
        assert option in result.stdout


def _actions(parser):
    return [(type(a).__name__, a.option_strings, a.dest, a.default, a.type, a.nargs, a.const,
             a.choices, a.required, a.help, a.metavar) for a in parser._actions]


def test_the_parser_is_detectron2s_plus_rtinsts_options():
    """``rtinst.cli`` repeats Detectron2's ``default_argument_parser`` without importing it: the
    same options, defaults and help, and rtinst's ``--dataset`` / ``--video-dataset`` after
    them; ``rtinst.engine.argument_parser`` is this parser."""
    from detectron2.engine import default_argument_parser

    from rtinst import cli
    from rtinst.engine import argument_parser

    assert argument_parser is cli.argument_parser
    theirs, ours = default_argument_parser(), cli.default_argument_parser()
    assert _actions(ours) == _actions(theirs)
    assert (ours.epilog, ours.formatter_class) == (theirs.epilog, theirs.formatter_class)
    extended = _actions(cli.argument_parser())
    assert extended[:len(_actions(theirs))] == _actions(theirs)
    assert [a[1] for a in extended[len(_actions(theirs)):]] == [["--dataset"],
                                                                 ["--video-dataset"]]
    args = cli.argument_parser().parse_args(["--dataset", "a=x.json,i", "--dataset", "b=y,j"])
    assert (args.dataset, args.video_dataset, args.opts) == (["a=x.json,i", "b=y,j"], [], [])


@pytest.mark.parametrize("module", ["cli", "errors"])
def test_modules_read_without_rtinst_import_only_the_standard_library(module):
    """``rtinst/cli.py`` (read by path by ``train_net.py``) and ``rtinst/errors.py`` (imported
    by it and by the light modules)."""
    tree = ast.parse((ROOT / PACKAGE / f"{module}.py").read_text())
    imported = {alias.name.split(".")[0] for node in _imports(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in _imports(tree)
                 if isinstance(node, ast.ImportFrom) and not node.level}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in _imports(tree))
    assert imported <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_every_rtinst_error_has_the_common_base_and_its_old_builtin_one():
    from rtinst import errors

    for name, base in [("ConfigError", ValueError), ("DatasetError", ValueError),
                       ("UnknownModelFamily", ValueError), ("CheckpointError", RuntimeError),
                       ("MethodError", RuntimeError), ("DemoError", Exception)]:
        error = getattr(errors, name)
        assert issubclass(error, errors.RtinstError) and issubclass(error, base), name
    interrupted = errors.TrainingInterrupted(2, 7, "out/model_0000007.pth")
    assert not isinstance(interrupted, Exception)  # Detectron2's loop would report a crash
    assert interrupted.signum == 2 and "SIGINT received: stopped after iteration 7" in str(
        interrupted)
