"""``skyroute cache invalidate``: remove cached answers on a router's admin listener.

Sends ``POST /cache/invalidate`` with the selectors given (an entry id, an
intent, a tenant, a policy version; an entry goes when it matches all of
them) to ``--router`` (the router's ``--admin-listen``), with the admin token
as the bearer when ``--admin-token-file`` is given. Prints how many entries
went. Exit status 0 on success, 1 when the router refused (the reason is
printed), 2 when it could not be reached.
"""

from __future__ import annotations

import sys
from pathlib import Path

from skyroute.cli.rollout import admin_request


def invalidate(
    router: str,
    selectors: dict[str, str | bool | None],
    *,
    admin_token_file: str | None = None,
    admin_ca: str | None = None,
) -> int:
    body = {k: v for k, v in selectors.items() if v is not None}
    if not {k for k in body if k != "wrong"}:
        print(
            "skyroute cache invalidate: name what to remove: --entry, --intent, --tenant "
            "or --policy-version",
            file=sys.stderr,
        )
        return 1
    scheme = "https" if admin_ca else "http"
    try:
        token = Path(admin_token_file).read_text().strip() if admin_token_file else None
        code, reply = admin_request(
            "POST", f"{scheme}://{router}/cache/invalidate", token, admin_ca, body
        )
    except (OSError, ValueError) as exc:
        print(f"skyroute cache invalidate: cannot reach {router}: {exc}", file=sys.stderr)
        return 2
    if code != 200:
        err = reply.get("error", reply)
        message = err.get("message", err) if isinstance(err, dict) else err
        print(f"skyroute cache invalidate: {code}: {message}", file=sys.stderr)
        return 1
    what = ", ".join(f"{k}={v}" for k, v in sorted(body.items()))
    print(
        f"{reply.get('invalidated', 0)} cached answers removed ({what}) on "
        f"{reply.get('node', router)}, backend {reply.get('backend', '?')}"
    )
    return 0
