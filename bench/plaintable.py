"""Plain-text stand-ins for the two rich classes the benchmark prints with.

rich is a dependency of skyroute; this keeps ``bench/run.py`` printing its
tables (as aligned columns, markup stripped) where it is not installed.
"""

from __future__ import annotations

import re
from typing import Any

_MARKUP = re.compile(r"\[/?[a-z ]*\]")


class Table:
    def __init__(self, title: str = "") -> None:
        self.title = title
        self.caption = ""
        self.columns: list[str] = []
        self.rows: list[list[str]] = []

    def add_column(self, name: str, justify: str = "left") -> None:
        self.columns.append(name)

    def add_row(self, *cells: str) -> None:
        self.rows.append([_MARKUP.sub("", c) for c in cells])

    def add_section(self) -> None:
        pass

    def render(self) -> str:
        grid = [self.columns, *self.rows]
        widths = [max(len(r[i]) for r in grid) for i in range(len(self.columns))]
        lines = [self.title] if self.title else []
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in grid]
        if self.caption:
            lines.append(self.caption)
        return "\n".join(lines)


class Console:
    is_terminal = False

    def __init__(self, width: int | None = None) -> None:
        self.width = width

    def print(self, obj: Any) -> None:
        print(obj.render() if isinstance(obj, Table) else _MARKUP.sub("", str(obj)))
