"""The one regular-expression engine of intent patterns: RE2, case-insensitive.

Routers match every pattern of a policy in one ``re2.Set`` pass; the control
plane, the admission webhook and ``skyroute policy test`` must refuse what
the routers would refuse, so both sides take the options and the check from
here. Python's ``re`` accepts more (lookaround, backreferences): a pattern
that only ``re`` accepts is refused at compile time, never NACKed by routers.
"""

from __future__ import annotations

from typing import Any

import re2


def options() -> Any:
    """The RE2 options routers compile intent patterns with."""
    opts = re2.Options()
    opts.case_sensitive = False
    return opts


def re2_error(pattern: str) -> str | None:
    """Why RE2 refuses ``pattern`` (as the routers' pattern set would), or None."""
    pattern_set = re2.Set.SearchSet(options())
    try:
        pattern_set.Add(pattern)
    except Exception as exc:  # re2.error, or ValueError from the binding
        return str(exc) or type(exc).__name__
    return None
