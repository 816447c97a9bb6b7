"""Tokens that end: a token may name a subject (the user) as well as the
channel; the sidecar ends a subscription when its token expires (unless the
client renewed it in time) and when the application revokes it, by subject,
by channel or both."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mod_wsgi_ws_sidecar import push as shared
from mod_wsgi_ws_sidecar import push_sidecar
from push_standin import SECRET, Streams, messages, receive, run, serving, subscribe

ORDERS = "orders.1"


def token(subject: str | None = None, ttl: float = 60, now: float | None = None) -> str:
    return shared.sign_token(SECRET, ORDERS, ttl, now=now, subject=subject)


# --- tokens (pure) -----------------------------------------------------------------------


def test_a_token_carries_its_subject_and_when_it_was_signed() -> None:
    grant = shared.read_token(SECRET, ORDERS, token("user:7", now=1000.5), now=1001)
    # A token lives at least its ttl: the expiry is rounded up to a whole second.
    assert grant == shared.Grant(expires=1061, issued_ms=1_000_500, subject="user:7")
    without = shared.read_token(SECRET, ORDERS, token(now=1000), now=1001)
    assert without == shared.Grant(expires=1060, issued_ms=1_000_000, subject=None)


def test_the_earlier_token_form_still_opens_its_channel() -> None:
    expires = 2000
    digest = shared._mac(SECRET, f"{ORDERS}\n{expires}")
    assert shared.read_token(SECRET, ORDERS, f"{expires}.{digest}", 1000) == shared.Grant(2000)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda t: t.replace(t.split(".")[2], "dXNlcjo4"), "token not valid for this channel"),
        (lambda t: t.replace(t.split(".")[1], "1"), "token not valid for this channel"),
        (lambda t: t + ".x", "no valid token"),
        (lambda t: "é" + t, "no valid token"),
        (lambda t: t + "A" * 400, "no valid token"),
    ],
)
def test_the_subject_and_the_moment_cannot_be_changed(change: Any, problem: str) -> None:
    assert shared.read_token(SECRET, ORDERS, change(token("user:7", now=1000)), 1001) == problem


def test_tokens_live_a_day_at_most() -> None:
    with pytest.raises(ValueError, match="at most 86400 seconds"):
        token(ttl=shared.MAX_TOKEN_TTL + 1)
    assert shared.read_token(SECRET, ORDERS, token(ttl=shared.MAX_TOKEN_TTL), time.time())


def test_revocations_by_subject_by_channel_or_both() -> None:
    revoked = push_sidecar.Revocations()
    for subject, channel in (("user:7", None), (None, "orders.2"), ("user:8", "orders.3")):
        revoked.add(shared.revocation_fields(subject, channel, at_ms=5000))
    before, after = 4000, 6000
    cases = [
        ("orders.1", "user:7", before, True),
        ("orders.1", "user:7", after, False),  # signed after it: logged in again
        ("orders.1", "user:9", before, False),
        ("orders.2", None, before, True),
        ("orders.2", "user:9", before, True),
        ("orders.3", "user:8", before, True),
        ("orders.3", "user:9", before, False),
        ("orders.4", "user:8", before, False),
    ]
    for channel, subject, issued, ends in cases:
        grant = shared.Grant(expires=10, issued_ms=issued, subject=subject)
        assert revoked.revokes(channel, grant) is ends, (channel, subject, issued)
    assert revoked.add({"revoke": "not json"}) is None
    assert revoked.add({"other": "1"}) is None
    revoked.forget_before(6000)
    assert revoked.moments == {}


# --- the sidecar -------------------------------------------------------------------------


def test_a_subscription_ends_when_its_token_expires() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            answer = await subscribe(ws, ORDERS, token=token("user:7", ttl=1))
            assert answer["type"] == "subscribed" and 0 < answer["expires_in"] <= 2
            ended = await receive(ws, timeout=3)
            assert ended == {"type": "expired", "channel": ORDERS, "reason": "token expired"}
            # Nothing after: the subscription is gone.
            await redis.publish(ORDERS, {"secret": True})
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=0.5)

    run(scenario())


def test_a_token_renewed_in_time_keeps_the_subscription_without_a_gap() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (push, client), client.ws_connect("/ws") as ws:
            await subscribe(ws, ORDERS, token=token("user:7", ttl=1))
            await ws.send_json({"type": "renew", "channel": ORDERS, "token": token("user:7")})
            renewed = await receive(ws)
            assert renewed["type"] == "renewed" and renewed["expires_in"] > 50
            ids = [await redis.publish(ORDERS, {"n": n}) for n in range(3)]
            assert [m["id"] for m in await messages(ws, 3)] == ids
            await asyncio.sleep(2.5)  # past the first token's expiry
            later = await redis.publish(ORDERS, {"n": 3})
            assert [m["id"] for m in await messages(ws, 1)] == [later]
            assert len(push.granted) == 1
            # A renewal with a bad token changes nothing; one for a channel not held is refused.
            await ws.send_json({"type": "renew", "channel": ORDERS, "token": "1.forged"})
            assert (await receive(ws))["reason"] == "token not valid for this channel"
            await ws.send_json({"type": "renew", "channel": "orders.9", "token": token()})
            assert (await receive(ws))["reason"] == "not subscribed"

    run(scenario())


def test_revoking_a_subject_ends_its_subscriptions_and_refuses_its_old_tokens() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with (
            serving(redis) as (_push, client),
            client.ws_connect("/ws") as mine,
            client.ws_connect("/ws") as theirs,
        ):
            old = token("user:7")
            await subscribe(mine, ORDERS, token=old)
            await subscribe(theirs, ORDERS, token=token("user:8"))
            started = time.monotonic()
            await redis.revoke(subject="user:7")
            ended = await receive(mine, timeout=2)
            assert ended["type"] == "revoked" and ended["channel"] == ORDERS
            assert time.monotonic() - started < 1
            live = await redis.publish(ORDERS, {"n": 1})
            assert [m["id"] for m in await messages(theirs, 1)] == [live]
            with pytest.raises(TimeoutError):
                await mine.receive(timeout=0.3)
            refused = await subscribe(mine, ORDERS, token=old)
            assert refused == {"type": "refused", "channel": ORDERS, "reason": "token revoked"}
            await asyncio.sleep(0.01)
            assert (await subscribe(mine, ORDERS, token=token("user:7")))["type"] == "subscribed"

    run(scenario())


def test_revoking_a_channel_ends_every_token_subscription_to_it() -> None:
    async def scenario() -> None:
        redis = Streams()
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            await subscribe(ws, ORDERS, token=token("user:7"))
            await subscribe(ws, "news")  # public: no token, not ended
            await redis.revoke(channel=ORDERS)
            assert (await receive(ws, timeout=2))["type"] == "revoked"
            live = await redis.publish("news", {"n": 1})
            assert [m["id"] for m in await messages(ws, 1)] == [live]

    run(scenario())


def test_a_revocation_made_before_the_sidecar_started_still_holds() -> None:
    async def scenario() -> None:
        redis = Streams()
        old = token("user:7")
        await asyncio.sleep(0.01)
        await redis.revoke(subject="user:7")
        async with serving(redis) as (_push, client), client.ws_connect("/ws") as ws:
            assert (await subscribe(ws, ORDERS, token=old))["reason"] == "token revoked"

    run(scenario())


@given(
    now=st.floats(min_value=1e9, max_value=4e9, allow_nan=False),
    ttl=st.integers(min_value=1, max_value=shared.MAX_TOKEN_TTL),
)
def test_a_token_lives_at_least_its_ttl_and_at_most_a_second_more(now: float, ttl: int) -> None:
    signed = token("user:7", ttl=ttl, now=now)
    assert isinstance(shared.read_token(SECRET, ORDERS, signed, now + ttl - 1e-3), shared.Grant)
    assert shared.read_token(SECRET, ORDERS, signed, now + ttl + 1) == "token expired"
