"""The bearer the CLI sends to a control plane's admin port.

``--admin-token-file`` when given (folder mode: the control plane's
``DIR/admin.token``; or any Kubernetes token). Otherwise, over HTTPS only, the
caller's own Kubernetes credentials: the token of the kubeconfig's current
user, as kubectl would send it (a static token, or what an exec or auth-provider
plugin returns), which the operator checks with a TokenReview and a
SubjectAccessReview. A kubeconfig user with only a client certificate has no
token to send, and nothing is sent in plaintext: without ``--admin-ca`` no
kubeconfig token leaves the machine.
"""

from __future__ import annotations

from pathlib import Path


def kubeconfig_token(kubeconfig: str | None = None) -> str | None:
    """The current kubeconfig user's bearer token (None: no kubeconfig, or no token)."""
    try:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)  # type: ignore[no-untyped-call]
    except Exception:  # no kubeconfig, or one without a usable context: no token
        return None
    # The client keeps it as "Bearer <token>" (key "BearerToken"; "authorization" in
    # older releases), refreshed by exec plugins on load.
    keys = cfg.api_key or {}
    value = keys.get("BearerToken") or keys.get("authorization") or ""
    scheme, _, token = str(value).partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def admin_bearer(token_file: str | None, https: bool, kubeconfig: str | None = None) -> str | None:
    """The token file's token, else (over HTTPS) the kubeconfig user's, else None."""
    if token_file:
        return Path(token_file).read_text().strip()
    return kubeconfig_token(kubeconfig) if https else None
