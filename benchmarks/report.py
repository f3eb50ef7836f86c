"""BENCHMARKS.md is shared by every benchmark script: each rewrites only its own section."""
from __future__ import annotations

from pathlib import Path

from space.files import atomic_write


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of the markdown file ``path`` — the text between
    ``<!-- BEGIN name -->`` and ``<!-- END name -->`` — with ``body``, or append it when the
    file or the section is missing; every other section is kept as it was. The file is
    replaced atomically, so a run interrupted while writing never truncates it."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(path, text)
