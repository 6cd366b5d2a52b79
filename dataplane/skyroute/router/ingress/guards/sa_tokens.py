"""ServiceAccount identity: projected tokens (audience ``skyroute``) verified locally.

The API server is an OIDC issuer: ``/.well-known/openid-configuration`` names
its JWKS, whose public keys verify every ServiceAccount token it signs. The
router fetches the JWKS once, keeps it, refreshes it every ``refresh_s`` and
at once (at most every ``min_refresh_s``) when a token names an unknown key
id, so a key rotation is picked up without a restart. A request costs one
signature check (RS256 or ES256, pyjwt) and is then cached by token digest
until the token expires (at most ``cache_s``).

When the JWKS cannot be fetched (discovery not reachable or not allowed),
or in ``tokenreview`` mode, the router asks for a TokenReview (``authentication.k8s.io/v1``) with
the same audience: one API call per token, cached the same way.

Refused: a bad signature, another audience, another issuer, an expired or
not-yet-valid token, a token that is not a ServiceAccount's.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt

from skyroute.router.ingress.guards.errors import invalid_key
from skyroute.router.ingress.guards.kube_access import KubeAccess
from skyroute.router.logs import event

log = logging.getLogger("skyroute.router.guards.sa")
AUDIENCE = "skyroute"
MAX_TOKEN_CHARS = 16_384
_ALGORITHMS = ["RS256", "ES256"]


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    namespace: str
    name: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class ServiceAccountVerifier:
    """Verifies ServiceAccount tokens against the API server's JWKS (TokenReview fallback)."""

    def __init__(
        self,
        access: KubeAccess,
        audience: str = AUDIENCE,
        refresh_s: float = 300.0,
        min_refresh_s: float = 10.0,
        cache_s: float = 60.0,
        timeout_s: float = 3.0,
        mode: str = "jwks",
    ) -> None:
        # "jwks": verify locally (TokenReview only while the JWKS is unavailable);
        # "tokenreview": always ask the API server (sees deleted ServiceAccounts at once).
        if mode not in ("jwks", "tokenreview"):
            raise ValueError(f"unknown ServiceAccount verification mode {mode!r}")
        self.mode = mode
        self.access = access
        self.audience = audience
        self.refresh_s = refresh_s
        self.min_refresh_s = min_refresh_s
        self.cache_s = cache_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.issuer: str | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._tried_at = -1e9
        self._lock = asyncio.Lock()
        self._cache: dict[bytes, tuple[float, ServiceAccount]] = {}
        self.reviews = 0  # TokenReview calls made (fallback path)

    async def _get(self, session: aiohttp.ClientSession, url: str) -> Any:
        async with session.get(
            url, ssl=self.access.ssl_context, headers=self.access.headers()
        ) as r:
            r.raise_for_status()
            return await r.json(content_type=None)

    async def refresh(self, force: bool = False) -> bool:
        """Fetch discovery and JWKS; True if keys are available afterwards."""
        async with self._lock:
            now = time.monotonic()
            fresh = self._keys and now - self._fetched_at < self.refresh_s
            if (fresh and not force) or now - self._tried_at < self.min_refresh_s:
                return bool(self._keys)
            self._tried_at = now
            try:
                async with aiohttp.ClientSession(timeout=self.timeout) as s:
                    base = self.access.server.rstrip("/")
                    disc = await self._get(s, base + "/.well-known/openid-configuration")
                    jwks = await self._get(s, base + "/openid/v1/jwks")
                keys = {}
                for k in jwks.get("keys", []):
                    if isinstance(k, dict) and k.get("kid"):
                        keys[str(k["kid"])] = jwt.PyJWK(k)
                self.issuer = str(disc["issuer"])
                self._keys = keys
                self._fetched_at = now
                event(log, "sa_jwks_refreshed", keys=len(keys), issuer=self.issuer)
            except Exception as e:
                event(log, "sa_jwks_unavailable", logging.WARNING, error=repr(e))
            return bool(self._keys)

    async def verify(self, token: str) -> ServiceAccount:
        if len(token) > MAX_TOKEN_CHARS:
            raise invalid_key("ServiceAccount token too long.")
        h = hashlib.sha256(token.encode()).digest()
        now = time.time()
        hit = self._cache.get(h)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise invalid_key("Malformed ServiceAccount token.") from None
        if self.mode == "jwks" and kid not in self._keys:
            await self.refresh(force=True)
        if self.mode == "jwks" and self._keys:
            sa, exp = self._verify_local(token, kid)
        else:
            sa, exp = await self._review(token)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[h] = (min(exp, now + self.cache_s), sa)
        return sa

    def _verify_local(self, token: str, kid: Any) -> tuple[ServiceAccount, float]:
        key = self._keys.get(str(kid)) if kid is not None else None
        if key is None:
            raise invalid_key("ServiceAccount token signed by an unknown key.")
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "aud", "iss"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise invalid_key("ServiceAccount token has expired.") from None
        except jwt.InvalidAudienceError:
            raise invalid_key(
                f"ServiceAccount token is not for audience {self.audience}."
            ) from None
        except jwt.PyJWTError as e:
            raise invalid_key(f"Invalid ServiceAccount token: {type(e).__name__}.") from None
        return _account(str(claims.get("sub", ""))), float(claims["exp"])

    async def _review(self, token: str) -> tuple[ServiceAccount, float]:
        self.reviews += 1
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            async with (
                aiohttp.ClientSession(timeout=self.timeout) as s,
                s.post(
                    self.access.server.rstrip("/") + "/apis/authentication.k8s.io/v1/tokenreviews",
                    json=body,
                    ssl=self.access.ssl_context,
                    headers=self.access.headers(),
                ) as r,
            ):
                r.raise_for_status()
                out = await r.json(content_type=None)
        except Exception as e:
            event(log, "sa_tokenreview_failed", logging.WARNING, error=repr(e))
            raise invalid_key("ServiceAccount token could not be verified.") from None
        status = out.get("status") or {}
        if not status.get("authenticated") or self.audience not in status.get("audiences", []):
            raise invalid_key("ServiceAccount token was refused by the API server.")
        user = status.get("user") or {}
        # A review carries no expiry: trust it for the cache window only.
        return _account(str(user.get("username", ""))), time.time() + self.cache_s


def _account(subject: str) -> ServiceAccount:
    parts = subject.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
        raise invalid_key("Token is not a ServiceAccount token.")
    return ServiceAccount(parts[2], parts[3])
