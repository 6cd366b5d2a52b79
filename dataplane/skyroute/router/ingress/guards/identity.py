"""Who is calling: a credential from any door becomes an :class:`Identity`.

A credential is an API key (``sk-sr-...``) or a ServiceAccount token (a JWT),
from ``Authorization: Bearer``, ``x-api-key`` or gRPC ``authorization``
metadata. The identity's ``tenant`` keys the cache partition and the
idempotency scope; its rules give the tier and the limits. Client headers
(``x-skyroute-tenant``, ``x-skyroute-tier``) count only for a tenant allowed
to delegate; its sub-tenants are named ``<tenant>/<sub>`` so a gateway can
never claim another tenant's partition. For everyone else they are ignored.

With ``allow_anonymous`` (local experiments), a request without a credential
is served as before this stage existed: the tenant header is trusted and no
limits apply. A request that does carry a credential is still verified.

A key verified once is remembered by this snapshot's authenticator (at most
:data:`MAX_VERIFIED` keys, in memory only, gone with the next snapshot, so a
revocation still takes effect with its push): its next request costs one
dict lookup and an expiry check instead of a SHA-256. Only successes are
remembered, and only a non-delegating tenant's (a gateway's identity depends
on its headers).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from skyroute.router.ingress.guards.errors import forbidden, invalid_key
from skyroute.router.ingress.guards.keys import PREFIX, KeyRing
from skyroute.router.ingress.guards.sa_tokens import ServiceAccountVerifier, looks_like_jwt
from skyroute.router.ingress.guards.tenants import TenantRules

#: Verified keys one authenticator remembers (a full cache is emptied, not grown).
MAX_VERIFIED = 10_000
_SUB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ANONYMOUS = TenantRules(name="", policies=frozenset({"*"}), delegate=True)


@dataclass(frozen=True, slots=True)
class Identity:
    # Keys the cache partition and the idempotency scope.
    tenant: str
    # The authenticated tenant, whose limits and budgets apply ("" when anonymous).
    account: str
    # "key:<public id>", "sa:<namespace>/<name>" or "anonymous": safe to log.
    principal: str
    key_id: str
    tier: str
    rules: TenantRules

    @property
    def anonymous(self) -> bool:
        return self.principal == "anonymous"


def credential(authorization: str | None, api_key: str | None) -> str | None:
    """The presented credential: a Bearer token first, then x-api-key."""
    if authorization:
        scheme, _, rest = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and rest.strip():
            return rest.strip()
    if api_key and api_key.strip():
        return api_key.strip()
    return None


class Authenticator:
    """Built once per snapshot (tenants, keys); :meth:`authenticate` per request."""

    def __init__(
        self,
        tenants: dict[str, TenantRules],
        keys: KeyRing,
        sa: ServiceAccountVerifier | None = None,
        allow_anonymous: bool = False,
    ) -> None:
        self.tenants = tenants
        self.keys = keys
        self.sa = sa
        self.allow_anonymous = allow_anonymous
        self._by_sa = {acct: t.name for t in tenants.values() for acct in t.service_accounts}
        # presented key -> (its identity, expiry in Unix seconds or 0)
        self._verified: dict[str, tuple[Identity, float]] = {}

    async def authenticate(
        self, cred: str | None, tenant_header: str = "", tier_header: str = ""
    ) -> Identity:
        if cred is None:
            if self.allow_anonymous:
                return Identity(tenant_header, "", "anonymous", "", tier_header, ANONYMOUS)
            raise invalid_key(
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-sr-...' "
                "or 'x-api-key'."
            )
        if cred.startswith(PREFIX):
            now = time.time()
            hit = self._verified.get(cred)
            if hit is not None and (not hit[1] or now < hit[1]):
                return hit[0]
            rec = self.keys.verify(cred, now)
            rules = self.tenants.get(rec.tenant)
            key_id, principal = rec.key_id, f"key:{rec.key_id}"
            if rules is None:
                raise invalid_key(f"API key {rec.key_id} belongs to no tenant.")
            if not rules.delegate:
                ident = Identity(rules.name, rules.name, principal, key_id, rules.tier, rules)
                if len(self._verified) >= MAX_VERIFIED:
                    self._verified.clear()
                self._verified[cred] = (ident, rec.expires_at)
                return ident
        elif looks_like_jwt(cred) and self.sa is not None:
            acct = await self.sa.verify(cred)
            name = self._by_sa.get((acct.namespace, acct.name))
            if name is None:
                raise forbidden(
                    f"ServiceAccount {acct.namespace}/{acct.name} is bound to no tenant."
                )
            rules, key_id = self.tenants[name], ""
            principal = f"sa:{acct.namespace}/{acct.name}"
        else:
            raise invalid_key("Incorrect API key provided: not a skyroute key (sk-sr-...).")
        tenant, tier = rules.name, rules.tier
        if rules.delegate:
            sub = tenant_header.strip()
            if sub and _SUB.match(sub):
                tenant = f"{rules.name}/{sub}"
            elif sub:
                raise forbidden("x-skyroute-tenant is not a valid sub-tenant name.", "tenant")
            tier = tier_header.strip()[:64] or tier
        return Identity(tenant, rules.name, principal, key_id, tier, rules)

    def authorize(self, ident: Identity, policy: str) -> None:
        """403 unless the identity's tenant may use ``policy`` (a request model name)."""
        if not ident.rules.may_use(policy):
            raise forbidden(f"Tenant {ident.account} may not use model {policy!r}.", "model")
