"""One error type for every way policy input can be wrong.

Operators fix policy files by reading error messages, often in a log line of
a control plane they did not start. Each problem therefore names the file, the
object (``Kind namespace/name``) and the field path inside it, in the same
shape kubectl uses (``spec.rules[1].pool``), so that a message can be acted on
without reading the source of the control plane. Problems are collected, not
raised one by one: a folder with three mistakes yields three lines at once,
which matters when each round trip is an edit, a save and a log check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the input, located as precisely as known."""

    file: str
    message: str
    obj: str = ""
    path: str = ""
    line: int | None = None

    def __str__(self) -> str:
        if not self.obj and not self.path:
            # File-level problems (YAML syntax, unreadable file): file:line: message.
            where = f"{self.file}:{self.line}" if self.line is not None else self.file
            return f"{where}: {self.message}"
        parts = [self.file]
        if self.obj:
            parts.append(self.obj)
        if self.path:
            parts.append(self.path)
        text = ": ".join([*parts, self.message])
        if self.line is not None:
            text += f" (line {self.line})"
        return text


class PolicyError(Exception):
    """The input folder cannot be compiled; ``problems`` says every reason why."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        if not self.problems:
            raise ValueError("PolicyError needs at least one problem")
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems)

    def summary(self) -> str:
        """One line: the problem count and the first problem."""
        first = str(self.problems[0])
        more = len(self.problems) - 1
        return first if more == 0 else f"{first} (and {more} more)"
