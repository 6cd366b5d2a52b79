"""Which environment variables a pool's ``apiKey: {env: NAME}`` may name.

A key reference is read by the router and sent to the pool's endpoint, so a pool
that could name any variable could send the router's other secrets
(``AWS_SECRET_ACCESS_KEY``, a Redis password, a database URL) to a host of its
choosing. Both sides apply this one rule: the router reads only an allowed
variable, and the control plane refuses a source naming another (an error that
names the file, the object and the field, while the previous version keeps
serving), so the mistake is not found later as a keyless provider.

With no ``--secret-env-prefix``, only ``SKYROUTE_*`` and ``*_API_KEY`` names are
allowed; with prefixes, only names starting with one of them (``''`` allows
every name, an explicit choice).
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_PREFIX = "SKYROUTE_"
DEFAULT_SUFFIX = "_API_KEY"


def env_refusal(name: str, prefixes: Sequence[str] = ()) -> str | None:
    """Why ``{env: name}`` is not allowed with these ``--secret-env-prefix`` values, or None."""
    if prefixes:
        if name.startswith(tuple(prefixes)):
            return None
        return f"variable not named {'|'.join(f'{p}*' for p in prefixes)} (--secret-env-prefix)"
    if name.startswith(DEFAULT_PREFIX) or name.endswith(DEFAULT_SUFFIX):
        return None
    return (
        f"variable not named {DEFAULT_PREFIX}* or *{DEFAULT_SUFFIX} "
        "(--secret-env-prefix allows other names)"
    )
