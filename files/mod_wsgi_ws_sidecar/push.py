"""Publishing to the push channel from a WSGI application.

    from mod_wsgi_ws_sidecar import push

    push.publish("orders.42", {"status": "shipped"})    # in any request handler
    token = push.token("orders.42", subject="user:7")  # for a browser allowed to watch it
    push.revoke(subject="user:7")                      # logged out: its subscriptions end

Each channel is a Redis Stream with a bounded history; every message gets
its position there (the stream entry's ID), which is what a browser
resumes from. The push sidecar (push_sidecar.py) relays the streams to the
browsers and shares the rules below with this module: the key names, the
channel names, and the tokens that open a private channel.

Settings come from the push sidecar's NAME.json, which the role writes
(readable by the daemon processes' group); `sidecar` names another push
sidecar than "push". A publish never hangs a request: Redis gets
`publish_timeout` seconds, after which PushError says what failed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

CONF_DIR = "/etc/mod_wsgi_ws_sidecar"
DEFAULT_SIDECAR = "push"
# Letters, digits and . _ : @ - ; at most 100, starting with a letter or digit.
CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
# A published message, encoded as JSON, may take at most this many bytes.
MAX_MESSAGE_BYTES = 65536
PUBLISH_TIMEOUT = 2.0
DEFAULT_TOKEN_TTL = 300
DEFAULT_CHANNEL_TTL = 86400
# A token lives a day at most: revocations are remembered that long.
MAX_TOKEN_TTL = 86400
MAX_SUBJECT = 200
MAX_TOKEN_LENGTH = 400


class PushError(RuntimeError):
    """A message could not be published (Redis unreachable, refused, too slow)."""


# --- names shared with the sidecar ---------------------------------------------------------


def key_prefix(sidecar: str) -> str:
    """Every key of a push sidecar starts with this (the role's Redis ACL user
    may touch these keys only)."""
    return f"mod_wsgi_ws_sidecar:{sidecar}:"


def stream_key(prefix: str, channel: str) -> str:
    return f"{prefix}channel:{channel}"


def epoch_key(prefix: str) -> str:
    """A random value set once: if Redis loses its data, a new one is set,
    and positions handed out before can no longer be trusted."""
    return f"{prefix}epoch"


def control_key(prefix: str) -> str:
    """The stream every push sidecar reads besides the channels: the
    application's revocations (revoke), kept for a token's lifetime."""
    return f"{prefix}control"


def revocation_fields(subject: str | None, channel: str | None, at_ms: int) -> dict[str, str]:
    """A revocation as the control stream holds it: tokens of `subject`, of
    `channel`, or of both at once, signed at or before `at_ms`, end."""
    if subject is None and channel is None:
        raise ValueError("revoke needs a subject, a channel or both")
    if channel is not None and not valid_channel(channel):
        raise ValueError(f"not a channel name: {channel!r}")
    if subject is not None:
        _subject_text(subject)
    return {"revoke": json.dumps({"subject": subject, "channel": channel, "at": at_ms})}


def valid_channel(channel: Any) -> bool:
    return isinstance(channel, str) and CHANNEL.fullmatch(channel) is not None


# --- tokens for private channels -----------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """What a valid token grants: its channel until `expires` (Unix seconds),
    signed at `issued_ms` for `subject` (the user it was signed for, if any)."""

    expires: int
    issued_ms: int = 0
    subject: str | None = None


def _mac(secret: str, signed: str) -> str:
    digest = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _subject_text(subject: str | None) -> str:
    if subject is None:
        return ""
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise ValueError(f"a subject must be a string of 1 to {MAX_SUBJECT} characters")
    return base64.urlsafe_b64encode(subject.encode()).rstrip(b"=").decode()


def sign_token(
    secret: str,
    channel: str,
    ttl: float,
    now: float | None = None,
    subject: str | None = None,
) -> str:
    """A token that opens `channel` for `subject` if given, for at least
    `ttl` seconds from now: EXPIRES (a whole second, rounded up, so at most
    one second more).ISSUED_MS.SUBJECT.MAC."""
    if not valid_channel(channel):
        raise ValueError(f"not a channel name: {channel!r}")
    if ttl > MAX_TOKEN_TTL:
        raise ValueError(f"a token may live at most {MAX_TOKEN_TTL} seconds")
    now = time.time() if now is None else now
    expires, issued = math.ceil(now + ttl), int(now * 1000)
    subject_text = _subject_text(subject)
    mac = _mac(secret, f"{channel}\n{expires}\n{issued}\n{subject_text}")
    return f"{expires}.{issued}.{subject_text}.{mac}"


def _number(text: str, digits: int) -> int | None:
    return int(text) if text.isdigit() and len(text) <= digits else None


def read_token(secret: str, channel: str, token: Any, now: float) -> Grant | str:
    """What `token` grants on `channel`, or why it grants nothing. A forged
    token and one signed for another channel look the same: the MAC does not
    match. Tokens of the earlier form EXPIRES.MAC (no subject) still open
    their channel."""
    if not isinstance(token, str) or not token.isascii() or len(token) > MAX_TOKEN_LENGTH:
        return "no valid token"
    parts = token.split(".")
    if len(parts) == 2:
        expires, issued, subject_text, mac = _number(parts[0], 12), 0, "", parts[1]
        signed = f"{channel}\n{parts[0]}"
    elif len(parts) == 4:
        expires, issued, subject_text, mac = (
            _number(parts[0], 12),
            _number(parts[1], 15),
            *parts[2:],
        )
        signed = f"{channel}\n{parts[0]}\n{parts[1]}\n{subject_text}"
    else:
        return "no valid token"
    if expires is None or issued is None:
        return "no valid token"
    if not hmac.compare_digest(mac.encode(), _mac(secret, signed).encode()):
        return "token not valid for this channel"
    if expires <= now:
        return "token expired"
    if issued and expires * 1000 - issued > (MAX_TOKEN_TTL + 1) * 1000:
        return "token lives too long"
    subject = None
    if subject_text:
        subject = base64.urlsafe_b64decode(subject_text + "=" * (-len(subject_text) % 4)).decode()
    return Grant(expires=expires, issued_ms=issued, subject=subject)


# --- publishing ----------------------------------------------------------------------------


def encode_message(data: Any) -> str:
    try:
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a push message must be JSON-serialisable: {exc}") from None
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ValueError(f"a push message may take at most {MAX_MESSAGE_BYTES} bytes as JSON")
    return text


class Publisher:
    """Publishes to one push sidecar's channels; safe to share between threads."""

    def __init__(self, settings: dict[str, Any]) -> None:
        import redis  # Debian's python3-redis, or redis from PyPI in a virtual environment
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.prefix = key_prefix(settings["name"])
        self.history = int(settings["history"])
        self.channel_ttl = int(settings.get("channel_ttl", DEFAULT_CHANNEL_TTL))
        self._token_secret = settings["token_secret"]
        server = settings["redis"]
        timeout = float(settings.get("publish_timeout", PUBLISH_TIMEOUT))
        self._url = server["url"]
        self._redis = redis.Redis.from_url(
            server["url"],
            username=server.get("username") or None,
            password=server.get("password") or None,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # One attempt: a request must not wait through retries (newer
            # redis-py releases retry by default).
            retry=Retry(NoBackoff(), 0),
            **({"ssl_ca_certs": server["ca_file"]} if server.get("ca_file") else {}),
        )
        self._errors = redis.RedisError

    @classmethod
    def from_file(cls, path: str) -> Publisher:
        with open(path, encoding="utf-8") as fh:
            return cls(json.load(fh))

    def publish(self, channel: str, data: Any) -> str:
        """Append `data` (anything JSON can encode) to `channel`; returns its position."""
        if not valid_channel(channel):
            raise ValueError(f"not a channel name: {channel!r}")
        text = encode_message(data)
        pipe = self._redis.pipeline(transaction=True)
        # Set the epoch if Redis has none (a first publish, or Redis lost its data).
        pipe.set(epoch_key(self.prefix), secrets.token_urlsafe(12), nx=True)
        # Exactly `history` kept (redis-py trims approximately by default), so
        # that a client told "resume" or "reset" is told the truth.
        key = stream_key(self.prefix, channel)
        pipe.xadd(key, {"d": text}, maxlen=self.history, approximate=False)
        # A channel nobody publishes to any more goes, channel_ttl after its last message.
        pipe.expire(key, self.channel_ttl)
        try:
            _epoch_set, position, _expiry_set = pipe.execute()
        except self._errors as exc:
            if "OOM" in str(exc):
                raise PushError(
                    f"cannot publish to push channel {channel!r}: Redis at {self._url} is full"
                    f" (its maxmemory); it evicts no history, so it refuses new messages: {exc}"
                ) from exc
            raise PushError(
                f"cannot publish to push channel {channel!r}: Redis at {self._url}: {exc}"
            ) from exc
        return position.decode() if isinstance(position, bytes) else str(position)

    def token(
        self, channel: str, ttl: float = DEFAULT_TOKEN_TTL, subject: str | None = None
    ) -> str:
        """A token the browser presents to subscribe to the private `channel`,
        for `subject` (the user, say) if given, so that revoke(subject=...)
        can end it."""
        return sign_token(self._token_secret, channel, ttl, subject=subject)

    def revoke(self, subject: str | None = None, channel: str | None = None) -> str:
        """End every subscription made with a token of `subject`, of `channel`
        or of both, on every push sidecar within a second, and refuse such
        tokens signed until now for the rest of their life."""
        fields = revocation_fields(subject, channel, int(time.time() * 1000))
        oldest = int((time.time() - MAX_TOKEN_TTL) * 1000)
        try:
            position = self._redis.xadd(
                control_key(self.prefix), fields, minid=oldest, approximate=True
            )
        except self._errors as exc:
            raise PushError(f"cannot revoke: Redis at {self._url}: {exc}") from exc
        return position.decode() if isinstance(position, bytes) else str(position)


_publishers: dict[str, Publisher] = {}
_lock = threading.Lock()


def publisher(sidecar: str = DEFAULT_SIDECAR) -> Publisher:
    """The process's publisher for a push sidecar, made on first use."""
    with _lock:
        if sidecar not in _publishers:
            _publishers[sidecar] = Publisher.from_file(f"{CONF_DIR}/{sidecar}.json")
        return _publishers[sidecar]


def publish(channel: str, data: Any, sidecar: str = DEFAULT_SIDECAR) -> str:
    return publisher(sidecar).publish(channel, data)


def token(
    channel: str,
    ttl: float = DEFAULT_TOKEN_TTL,
    sidecar: str = DEFAULT_SIDECAR,
    subject: str | None = None,
) -> str:
    return publisher(sidecar).token(channel, ttl, subject)


def revoke(
    subject: str | None = None, channel: str | None = None, sidecar: str = DEFAULT_SIDECAR
) -> str:
    return publisher(sidecar).revoke(subject, channel)
