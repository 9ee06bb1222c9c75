"""Signing and sending webhook bodies: the HTTP side of deliveries, with no database access.

A receiver checks a delivery by computing HMAC-SHA256 over the raw request body with the
subscription's secret and comparing it with `X-Tessera-Signature: sha256=<hex>` (in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Tessera-Signature"
EVENT_HEADER = "X-Tessera-Event"
DELIVERY_HEADER = "X-Tessera-Delivery"
USER_AGENT = "Tessera-Webhooks/1"

# A receiver should answer quickly and do its work later; a slow one is retried, not waited for.
TIMEOUT_SECONDS = 5
# First retry after 30 s, then doubling: 30, 60, 120, 240, 480 s — about 15 minutes in all.
BACKOFF_BASE_SECONDS = 30
MAX_ATTEMPTS = 6
# What a receiver says back is kept only as a hint for whoever reads the delivery log.
RESPONSE_EXCERPT = 300


def body_bytes(payload: dict) -> bytes:
    """The exact bytes sent: compact, keys sorted, UTF-8. The same payload always gives the same
    bytes, so a retry carries the same signature."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: "sha256=" + hex HMAC-SHA256 keyed by `secret`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What a receiver does: recompute the signature over the raw body and compare in constant time."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


def backoff_seconds(attempts_made: int) -> int:
    """Delay before the next attempt after `attempts_made` failed ones: 30 s × 2^(n-1)."""
    return BACKOFF_BASE_SECONDS * 2 ** max(attempts_made - 1, 0)


@dataclass
class AttemptResult:
    """One POST: the status code (None when no answer came), an error text, and whether trying again
    later could help (network trouble, timeouts, 5xx, 408 and 429)."""

    response_code: int | None
    error: str
    retryable: bool
    duration_ms: int
    response_excerpt: str = ""

    @property
    def ok(self) -> bool:
        return self.response_code is not None and 200 <= self.response_code < 300


def post(
    url: str, body: bytes, headers: dict[str, str], *, timeout: float = TIMEOUT_SECONDS
) -> AttemptResult:
    """POST `body` to `url` once. Redirects are not followed: a receiver must give its final URL,
    and following one would resend a signed body to a place nobody subscribed."""
    started = time.monotonic()
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=timeout)

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
        )
        response = connection.getresponse()
        excerpt = response.read(RESPONSE_EXCERPT).decode("utf-8", errors="replace")
    except TimeoutError:
        return AttemptResult(None, f"No answer within {timeout:g} s.", True, elapsed())
    except ssl.SSLError as exc:
        return AttemptResult(None, f"TLS error: {exc}", True, elapsed())
    except (OSError, http.client.HTTPException) as exc:
        return AttemptResult(None, f"{type(exc).__name__}: {exc}", True, elapsed())
    finally:
        connection.close()
    code = response.status
    if 200 <= code < 300:
        return AttemptResult(code, "", False, elapsed(), excerpt)
    retryable = code >= 500 or code in (408, 429)
    reason = f"The receiver answered {code} {response.reason}".strip()
    if 300 <= code < 400:
        reason += " (redirects are not followed; subscribe the final URL)"
    return AttemptResult(code, reason + ".", retryable, elapsed(), excerpt)
