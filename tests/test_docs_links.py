"""The documentation's links: every relative link of README.md and docs/**/*.md points at a file
or folder that exists, the README stays short, and every docs page is linked from the README or
the docs index (docs/README.md)."""
import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOCS_INDEX = DOCS / "README.md"
README_MAX_BYTES = 10_240

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)")
# [text](target) and ![alt](target), the target optionally in <...> and followed by a "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^()\s]+)(?:\s+[\"'(][^)]*)?\)")
# reference definitions: [label]: target
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files():
    return [README, *sorted(DOCS.rglob("*.md"))]


def _prose_lines(text):
    """(line number, line) outside fenced code blocks, with inline code spans blanked."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        opening = FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)[0] * len(opening.group(1))
            continue
        if fence is not None:
            if line.strip().startswith(fence):
                fence = None
            continue
        yield number, CODE_SPAN.sub("", line)


def links(path):
    """(line number, target as written) of every Markdown link and image in ``path``."""
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        found.extend((number, t[1:-1] if t.startswith("<") else t) for t in targets)
    return found


def local_target(target):
    """The file part of a relative link target, or None for URLs and same-page anchors."""
    if SCHEME.match(target) or target.startswith("#"):
        return None
    return unquote(target.split("#", 1)[0].split("?", 1)[0])


def _where(path):
    return path.relative_to(ROOT).as_posix()


def test_relative_links_point_at_existing_files():
    broken = []
    for path in markdown_files():
        for number, target in links(path):
            local = local_target(target)
            if local is None:
                continue
            if local.startswith("/"):
                broken.append(f"{_where(path)}:{number}: ({target}) is absolute; write it "
                              "relative to the file")
            elif not (path.parent / local).exists():
                broken.append(f"{_where(path)}:{number}: ({target}) does not exist "
                              f"(resolved: {_where((path.parent / local).resolve())})")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_short():
    size = README.stat().st_size
    assert size < README_MAX_BYTES, (
        f"README.md is {size} bytes, over {README_MAX_BYTES}: move the detail into docs/")


def test_every_docs_page_is_linked_from_the_readme_or_the_docs_index():
    linked = set()
    for index in (README, DOCS_INDEX):
        if not index.exists():
            continue
        for _, target in links(index):
            local = local_target(target)
            if local:
                linked.add((index.parent / local).resolve())
    pages = [*DOCS.glob("*.md"), *(DOCS / "methods").glob("*.md")]
    orphans = sorted(_where(p) for p in pages if p.resolve() not in linked)
    assert not orphans, ("docs pages linked from neither README.md nor docs/README.md: "
                         + ", ".join(orphans))
