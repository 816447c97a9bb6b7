"""Publishing to the push channel from a WSGI application.

    import mod_wsgi_ws_sidecar_push as push

    push.publish("orders.42", {"status": "shipped"})    # in any request handler
    token = push.token("orders.42")                    # for a browser allowed to watch it

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
import re
import secrets
import threading
import time
from typing import Any

CONF_DIR = "/etc/mod_wsgi_ws_sidecar"
DEFAULT_SIDECAR = "push"
# Letters, digits and . _ : @ - ; at most 100, starting with a letter or digit.
CHANNEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
# A published message, encoded as JSON, may take at most this many bytes.
MAX_MESSAGE_BYTES = 65536
PUBLISH_TIMEOUT = 2.0
DEFAULT_TOKEN_TTL = 300


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


def valid_channel(channel: Any) -> bool:
    return isinstance(channel, str) and CHANNEL.fullmatch(channel) is not None


# --- tokens for private channels -----------------------------------------------------------


def _mac(secret: str, channel: str, expires: int) -> str:
    digest = hmac.new(secret.encode(), f"{channel}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_token(secret: str, channel: str, ttl: float, now: float | None = None) -> str:
    """A token that opens `channel` until `ttl` seconds from now: EXPIRES.MAC."""
    if not valid_channel(channel):
        raise ValueError(f"not a channel name: {channel!r}")
    expires = int((time.time() if now is None else now) + ttl)
    return f"{expires}.{_mac(secret, channel, expires)}"


def token_problem(secret: str, channel: str, token: Any, now: float) -> str | None:
    """Why `token` does not open `channel` (None: it does). A forged token and
    one signed for another channel look the same: the MAC does not match."""
    if not isinstance(token, str) or token.count(".") != 1 or not token.isascii():
        return "no valid token"
    expires, mac = token.split(".")
    if not expires.isdigit() or len(expires) > 12:
        return "no valid token"
    if not hmac.compare_digest(mac.encode(), _mac(secret, channel, int(expires)).encode()):
        return "token not valid for this channel"
    if int(expires) <= now:
        return "token expired"
    return None


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
        pipe.xadd(
            stream_key(self.prefix, channel),
            {"d": text},
            maxlen=self.history,
            approximate=False,
        )
        try:
            _, position = pipe.execute()
        except self._errors as exc:
            raise PushError(
                f"cannot publish to push channel {channel!r}: Redis at {self._url}: {exc}"
            ) from exc
        return position.decode() if isinstance(position, bytes) else str(position)

    def token(self, channel: str, ttl: float = DEFAULT_TOKEN_TTL) -> str:
        """A token the browser presents to subscribe to the private `channel`."""
        return sign_token(self._token_secret, channel, ttl)


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


def token(channel: str, ttl: float = DEFAULT_TOKEN_TTL, sidecar: str = DEFAULT_SIDECAR) -> str:
    return publisher(sidecar).token(channel, ttl)
