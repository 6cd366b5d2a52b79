"""API keys: format, digests only, constant-time verify, and no secret in any error."""

from __future__ import annotations

import time

import pytest

from skyroute.router.ingress.guards.errors import GuardError
from skyroute.router.ingress.guards.keys import (
    DIGEST_RE,
    KeyRecord,
    KeyRing,
    digest,
    generate,
    public_id,
)


def _ring(*recs: KeyRecord) -> KeyRing:
    return KeyRing(list(recs))


def _secret(key: str) -> str:
    return key.rsplit("-", 1)[1]


def test_generated_keys_are_unique_and_well_formed() -> None:
    keys = [generate() for _ in range(200)]
    assert len({k.key for k in keys}) == 200
    for k in keys:
        assert k.key.startswith(f"sk-sr-{k.key_id}-")
        assert public_id(k.key) == k.key_id
        assert DIGEST_RE.match(k.digest) and k.digest == digest(k.key)
        assert _secret(k.key) not in k.digest


def test_verify_accepts_the_key_and_returns_its_tenant() -> None:
    k = generate()
    rec = _ring(KeyRecord(k.key_id, k.digest, "acme")).verify(k.key, time.time())
    assert rec.tenant == "acme" and rec.key_id == k.key_id


def _refusal(ring: KeyRing, presented: str, now: float | None = None) -> GuardError:
    with pytest.raises(GuardError) as exc:
        ring.verify(presented, time.time() if now is None else now)
    err = exc.value
    assert err.status == 401 and err.code == "invalid_api_key"
    # The secret part of what was presented never appears in the error.
    text = repr(err.body()) + repr(err.headers()) + str(err)
    secret = presented.rsplit("-", 1)[-1]
    if len(secret) >= 8:
        assert secret not in text
    return err


def test_wrong_unknown_revoked_expired_and_malformed_are_refused() -> None:
    good, other = generate(), generate()
    ring = _ring(
        KeyRecord(good.key_id, good.digest, "acme"),
        KeyRecord(other.key_id, other.digest, "acme", revoked=True),
    )
    wrong = f"sk-sr-{good.key_id}-{_secret(other.key)}"
    assert good.key_id in _refusal(ring, wrong).message
    assert "not valid" in _refusal(ring, generate().key).message
    assert "revoked" in _refusal(ring, other.key).message
    exp = _ring(KeyRecord(good.key_id, good.digest, "acme", expires_at=time.time() + 60))
    assert exp.verify(good.key, time.time()).tenant == "acme"
    assert "expired" in _refusal(exp, good.key, now=time.time() + 61).message
    for bad in ("", "sk-sr-", "Bearer x", "sk-sr-nothex-abc", good.key + "x", "x" * 10_000):
        _refusal(ring, bad)


def test_a_malformed_key_is_never_echoed() -> None:
    secretish = "sk-sr-zzzz-ThisIsMySecretValue1234567890"
    err = _refusal(_ring(), secretish)
    assert "ThisIsMySecretValue" not in repr(err.body())
