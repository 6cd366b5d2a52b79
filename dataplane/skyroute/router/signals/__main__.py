"""``python -m skyroute.router.signals README.md``: rewrite the README's signal table."""

from __future__ import annotations

import sys
from pathlib import Path

from skyroute.router.signals.readme import rewrite


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m skyroute.router.signals README.md", file=sys.stderr)
        return 2
    path = Path(argv[0])
    path.write_text(rewrite(path.read_text()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
