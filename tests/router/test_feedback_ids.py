"""Feedback ids: minted, verified, refused when forged, expired, malformed or too long."""

from __future__ import annotations

import pytest

from skyroute.router.feedback import MAX_AGE_S, BadFeedbackId, FeedbackDesk, Served

S = Served("rid", "acme", "p", "v1", "pool", "model-a", "code", 1_000_000)


def test_a_minted_id_verifies_to_what_it_names_on_any_desk_with_the_key() -> None:
    a, b = FeedbackDesk(key=b"k" * 32, clock=lambda: 1_000.0), FeedbackDesk(key=b"k" * 32)
    b.clock = lambda: 1_000.0 + MAX_AGE_S - 1
    token = a.mint(S)
    assert b.verify(token) == S


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "not issued"),
        (lambda t: "fb2" + t[3:], "not a feedback id"),
        (lambda t: "x" * 2000, "longer than"),
        (lambda t: t.replace(".", "", 1), "not a feedback id"),
    ],
)
def test_altered_ids_are_refused_with_the_reason(mutate, says) -> None:  # type: ignore[no-untyped-def]
    desk = FeedbackDesk(key=b"k" * 32, clock=lambda: 1_000.0)
    with pytest.raises(BadFeedbackId, match=says):
        desk.verify(mutate(desk.mint(S)))


def test_another_key_or_an_old_id_is_refused() -> None:
    token = FeedbackDesk(key=b"k" * 32).mint(S)
    with pytest.raises(BadFeedbackId, match="not issued"):
        FeedbackDesk(key=b"j" * 32).verify(token)
    late = FeedbackDesk(key=b"k" * 32, clock=lambda: 1_000.0 + MAX_AGE_S + 1)
    with pytest.raises(BadFeedbackId, match="older than"):
        late.verify(token)


def test_a_signed_body_that_is_not_the_fields_is_malformed() -> None:
    desk = FeedbackDesk(key=b"k" * 32, clock=lambda: 1_000.0)
    body = "fb1.WzEsMl0"  # [1,2]
    with pytest.raises(BadFeedbackId, match="malformed"):
        desk.verify(f"{body}.{desk._mac(body)}")


def test_a_short_key_in_the_environment_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKYROUTE_FEEDBACK_KEY", "short")
    with pytest.raises(ValueError, match="16 bytes"):
        FeedbackDesk()
