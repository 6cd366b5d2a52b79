"""The README's signal table, rendered from the registry.

``python -m skyroute.router.signals README.md`` rewrites the table between
the ``<!-- signals:begin -->`` and ``<!-- signals:end -->`` markers; a test
fails when the committed table differs from :func:`table`.
"""

from __future__ import annotations

from skyroute.router.signals.registry import SIGNALS

BEGIN = "<!-- signals:begin (generated from skyroute.router.signals.registry) -->"
END = "<!-- signals:end -->"


def table() -> str:
    """The signal table in Markdown."""
    rows = [
        "| signal | type | from | matched by | meaning |",
        "|---|---|---|---|---|",
    ]
    for s in SIGNALS:
        crd = ", ".join(f"`{c}`" for c in s.crd) if s.crd else "none"
        rows.append(f"| `{s.name}` | {s.type.__name__} | {s.source} | {crd} | {s.summary} |")
    return "\n".join(rows) + "\n"


def rewrite(text: str) -> str:
    """``text`` with its signal table replaced by a fresh one."""
    head, sep, rest = text.partition(BEGIN)
    if not sep:
        raise ValueError(f"no {BEGIN!r} marker")
    _, sep, tail = rest.partition(END)
    if not sep:
        raise ValueError(f"no {END!r} marker")
    return f"{head}{BEGIN}\n{table()}{END}{tail}"


def current(text: str) -> str:
    """The table between the markers of ``text`` as committed."""
    return text.partition(BEGIN)[2].partition(END)[0].removeprefix("\n")
