"""Self-contained HTML pages (no scripts, no external resources) that refer to the run's files
by relative paths."""
import html
import os
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1400px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: .3em 0; }
pre { background: #f7f7f7; padding: .8em; overflow: auto; max-height: 30em; font-size: .85em; }
.side { display: flex; gap: 1em; align-items: flex-start; } .side > div { flex: 1; min-width: 0; }
"""


def escape(value):
    return html.escape(str(value))


def number(value, digits=1):
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else escape(value)


def table(header, rows):
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


class Page:
    """An HTML page written into ``folder``; ``image`` and ``link`` refer to files by their path
    relative to it, and only to files that exist (others are left out: ``missing`` lists
    them)."""

    def __init__(self, folder, title):
        self.folder = Path(folder)
        self.title = title
        self.parts = []
        self.missing = []

    def _relative(self, path):
        path = Path(path)
        if not path.is_file():
            self.missing.append(str(path))
            return None
        return Path(os.path.relpath(path, self.folder)).as_posix()

    def heading(self, text, level=2):
        self.parts.append(f"<h{level}>{escape(text)}</h{level}>")

    def paragraph(self, text):
        self.parts.append(f"<p>{escape(text)}</p>")

    def raw(self, markup):
        self.parts.append(markup)

    def image_tag(self, path, alt):
        src = self._relative(path)
        if src is None:
            return ""
        return (f'<a href="{escape(src)}"><img src="{escape(src)}" alt="{escape(alt)}" '
                f'loading="lazy"></a>')

    def link_tag(self, path, text=None):
        href = self._relative(path)
        if href is None:
            return ""
        return f'<a href="{escape(href)}">{escape(text or Path(path).name)}</a>'

    def image(self, path, alt):
        tag = self.image_tag(path, alt)
        if tag:
            self.parts.append(f"<div>{tag}</div>")

    def links(self, paths):
        tags = [t for t in (self.link_tag(p) for p in paths) if t]
        if tags:
            self.parts.append("<p>Files: " + " · ".join(tags) + "</p>")

    def preformatted(self, text):
        self.parts.append(f"<pre>{escape(text)}</pre>")

    def write(self, name="report.html"):
        path = self.folder / name
        content = (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>"
                   f"{escape(self.title)}</title><style>{STYLE}</style></head><body>"
                   f"<h1>{escape(self.title)}</h1>" + "\n".join(self.parts) + "</body></html>\n")
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(content)
        os.replace(temporary, path)
        return path
