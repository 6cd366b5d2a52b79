"""Who may talk to the operator: ServiceAccount tokens on the link, SubjectAccessReview on writes.

Routers on a cluster have no client certificate; they present their projected
ServiceAccount token (audience ``skyroute-control``, ``--link-audience``) as
bearer metadata (``distribution/tokens.py``). The operator asks the API server
what the token is worth with a TokenReview (``authentication.k8s.io/v1``, the
audience checked by the API server and again here), then:

* the user must be a ServiceAccount on the allowed lists: routers
  (``--router-service-account NS/NAME``, default ``skyroute-router`` in the
  operator's namespace) and operator replicas forwarding outcomes
  (``--operator-service-account``, default ``skyroute-operator`` there);
  anything else, an authenticated user included, is PERMISSION_DENIED;
* a pod-bound token (every projected token the kubelet writes names its pod
  in the review's ``extra``) binds the node ids ``POD``, ``POD-*`` and
  ``POD/*``, and its identity is ``NS/NAME/POD``, so one router pod cannot
  open or report for another pod's node; a token bound to no pod may claim
  any node id free at the time, which its identity then holds.

Admin writes on the admin port (``POST /rollouts/NS/NAME/promote|abort``)
carry the caller's own Kubernetes bearer token (``kubectl create token``, or
a user's OIDC token): a TokenReview with the API server's default audience
says who it is, and a SubjectAccessReview (``authorization.k8s.io/v1``) asks
whether that user may ``update`` the subresource ``routingpolicies/rollout``
of that policy (group ``skyroute.io``), which RBAC grants like any other
(``resources: [routingpolicies/rollout], verbs: [update]``). 401 without a
valid token, 403 without the permission. The two reads of business data go
the same way, cluster-wide: ``get`` on ``tenants/spend`` (``GET /spend``) and
``get`` on ``tenants/outcomes`` (``GET /outcomes``, every tenant's recent
outcomes), never a rollout grant.

Every answer, yes or no, is cached by token digest for a short time
(``ttl_s``, never past the token's own ``exp``; refusals for less) in a
bounded map, so a reconnect storm or a flood of bad tokens costs the API
server at most one review per token per window. The operator needs
``create`` on ``tokenreviews`` and ``subjectaccessreviews`` (its ClusterRole).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from skyroute.control.distribution.tls import Identity
from skyroute.control.distribution.tokens import MAX_TOKEN_CHARS, TokenRefused
from skyroute.control.logs import event
from skyroute.control.policy.model import GROUP

log = logging.getLogger("skyroute.control.kube.linkauth")

AUDIENCE = "skyroute-control"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
SA_PREFIX = "system:serviceaccount:"
ROLLOUT_SUBRESOURCE = "rollout"
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class User:
    """What a TokenReview says a token is."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, list[str]] = field(default_factory=dict)

    @property
    def service_account(self) -> tuple[str, str] | None:
        parts = self.username.removeprefix(SA_PREFIX).split(":")
        if not self.username.startswith(SA_PREFIX) or len(parts) != 2 or not all(parts):
            return None
        return parts[0], parts[1]

    @property
    def pod(self) -> str:
        pods = self.extra.get(POD_NAME_EXTRA) or []
        return str(pods[0]) if pods else ""


def _expiry(token: str) -> float | None:
    """The token's ``exp`` claim (unverified: the review already vouched for it), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        return float(exp) if isinstance(exp, int | float) else None
    except (IndexError, ValueError):
        return None


class Reviews:
    """TokenReview and SubjectAccessReview calls, with a bounded, short-lived cache."""

    def __init__(
        self,
        api_client: client.ApiClient,
        ttl_s: float = 30.0,
        refused_ttl_s: float = 5.0,
        max_entries: int = 4096,
    ) -> None:
        self._client = api_client
        self._authn = client.AuthenticationV1Api(api_client)
        self._authz = client.AuthorizationV1Api(api_client)
        self.ttl_s = ttl_s
        self.refused_ttl_s = refused_ttl_s
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[float, object]] = {}
        self.calls = 0  # reviews asked of the API server (cache misses)

    def _cached(self, key: bytes) -> object | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if hit[0] <= time.time():
            del self._cache[key]
            return None
        return hit[1]

    def _keep(self, key: bytes, value: object, until: float) -> None:
        if len(self._cache) >= self.max_entries:
            now = time.time()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            while len(self._cache) >= self.max_entries:  # still full: the oldest go
                del self._cache[next(iter(self._cache))]
        self._cache[key] = (until, value)

    async def _create(self, fn: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        result = await asyncio.to_thread(fn, body, _request_timeout=TIMEOUT)
        data = self._client.sanitize_for_serialization(result)  # type: ignore[no-untyped-call]
        return data if isinstance(data, dict) else {}

    async def user(self, token: str, audiences: Iterable[str] = ()) -> User:
        """Who ``token`` is (for all of ``audiences``; none: the API server's); TokenRefused."""
        if len(token) > MAX_TOKEN_CHARS:
            raise TokenRefused("unauthenticated", "token too long")
        wanted = sorted(audiences)
        key = hashlib.sha256(("\n".join([*wanted, token])).encode()).digest()
        hit = self._cached(key)
        if isinstance(hit, User):
            return hit
        if isinstance(hit, TokenRefused):
            raise hit
        spec: dict[str, Any] = {"token": token}
        if wanted:
            spec["audiences"] = wanted
        try:
            out = await self._create(
                self._authn.create_token_review,
                {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
            )
        except Exception as exc:  # the API server is away: refuse, cache nothing
            event(log, "tokenreview_failed", logging.WARNING, error=repr(exc))
            raise TokenRefused("review_failed", "the token could not be reviewed") from None
        status = out.get("status") or {}
        now = time.time()
        if not status.get("authenticated") or not set(wanted) <= set(status.get("audiences") or []):
            error = str(status.get("error") or "not authenticated")[:200]
            refused = TokenRefused("unauthenticated", f"token refused by the API server: {error}")
            self._keep(key, refused, now + self.refused_ttl_s)
            raise refused
        raw = status.get("user") or {}
        user = User(
            username=str(raw.get("username", "")),
            uid=str(raw.get("uid", "")),
            groups=tuple(str(g) for g in raw.get("groups") or ()),
            extra={str(k): [str(x) for x in v] for k, v in (raw.get("extra") or {}).items()},
        )
        exp = _expiry(token)
        self._keep(key, user, min(now + self.ttl_s, exp if exp is not None else now + self.ttl_s))
        return user

    async def allowed(self, user: User, attributes: dict[str, str]) -> bool:
        """A SubjectAccessReview: may ``user`` do ``attributes`` (verb, group, resource...)?"""
        key = hashlib.sha256(
            json.dumps([user.username, user.uid, sorted(attributes.items())]).encode()
        ).digest()
        hit = self._cached(key)
        if isinstance(hit, bool):
            return hit
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user.username,
                "uid": user.uid,
                "groups": list(user.groups),
                "extra": user.extra,
                "resourceAttributes": attributes,
            },
        }
        try:
            out = await self._create(self._authz.create_subject_access_review, body)
        except Exception as exc:
            event(log, "subjectaccessreview_failed", logging.WARNING, error=repr(exc))
            return False
        allowed = bool((out.get("status") or {}).get("allowed"))
        self._keep(key, allowed, time.time() + (self.ttl_s if allowed else self.refused_ttl_s))
        return allowed


def parse_accounts(values: Iterable[str], default_namespace: str) -> frozenset[tuple[str, str]]:
    """``NS/NAME`` (or ``NAME``, in ``default_namespace``) as (namespace, name) pairs."""
    out = set()
    for value in values:
        ns, _, name = value.rpartition("/")
        if not name or "/" in ns:
            raise ValueError(f"ServiceAccount {value!r} is not NAMESPACE/NAME")
        out.add((ns or default_namespace, name))
    return frozenset(out)


class LinkAuthenticator:
    """Router and operator ServiceAccounts on the gRPC link (``tokens.TokenAuthenticator``)."""

    def __init__(
        self,
        reviews: Reviews,
        routers: frozenset[tuple[str, str]],
        operators: frozenset[tuple[str, str]] = frozenset(),
        audience: str = AUDIENCE,
    ) -> None:
        self.reviews = reviews
        self.routers = routers
        self.operators = operators
        self.audience = audience

    async def authenticate(self, token: str) -> Identity:
        user = await self.reviews.user(token, [self.audience])
        account = user.service_account
        if account is None:
            raise TokenRefused(
                "wrong_role", f"{user.username!r} is not a ServiceAccount", denied=True
            )
        role = "router" if account in self.routers else ""
        role = role or ("operator" if account in self.operators else "")
        if not role:
            raise TokenRefused(
                "wrong_role",
                f"ServiceAccount {account[0]}/{account[1]} is not a router or operator of this "
                "control plane (--router-service-account)",
                denied=True,
            )
        pod = user.pod
        name = "/".join((*account, pod) if pod else account)
        return Identity(name, role, nodes=pod)


#: The admin port's reads that need a grant, by action: (resource, subresource, verb) of
#: group skyroute.io; a Tenant's spend (``GET /spend``) and the recent outcomes of every
#: tenant (``GET /outcomes``). Every other action is a rollout write.
GUARDED_READS = {
    "spend": ("tenants", "spend", "get"),
    "outcomes": ("tenants", "outcomes", "get"),
}


class AdminAuthorizer:
    """Admin writes: TokenReview, then SubjectAccessReview on ``routingpolicies/rollout``."""

    def __init__(self, reviews: Reviews) -> None:
        self.reviews = reviews

    async def __call__(
        self, header: str, namespace: str, name: str, action: str
    ) -> tuple[int, str] | None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return 401, "admin writes need Authorization: Bearer <Kubernetes token>"
        try:
            user = await self.reviews.user(token)
        except TokenRefused as refused:
            return 401, refused.message
        # A rollout write; or one of the reads of business data (cluster-wide).
        resource, sub, verb = GUARDED_READS.get(
            action, ("routingpolicies", ROLLOUT_SUBRESOURCE, "update")
        )
        attributes = {
            "group": GROUP,
            "resource": resource,
            "subresource": sub,
            "verb": verb,
            "namespace": namespace,
            "name": name,
        }
        if await self.reviews.allowed(user, attributes):
            return None
        return 403, (
            f"{user.username!r} may not {verb} {resource}/{sub} {namespace or '*'}/{name} "
            f"({action})"
        )
