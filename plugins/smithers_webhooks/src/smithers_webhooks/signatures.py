"""Verifying a delivery's signature, per scheme, against every configured secret.

- ``hmac`` (upstream's) and ``github``: ``signature_prefix`` (``sha256=``) + lowercase hex
  HMAC-SHA256 of the raw body, in ``signature_header`` (``x-hub-signature-256``).
- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]``, hex HMAC-SHA256 of
  ``<t>.<body>`` keyed by the whole signing secret; ``t`` within the tolerance.
- ``standard`` (Standard Webhooks): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64> [v1,<base64> ...]``, base64 HMAC-SHA256 of
  ``<id>.<timestamp>.<body>`` keyed by the base64 after ``whsec_``; the timestamp within the
  tolerance.

Every comparison is constant-time. A failure raises ``UNAUTHORIZED`` "Webhook signature
verification failed" with the reason in ``details`` (never the expected value).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from smithers_core.errors import SmithersError
from smithers_core.registrations import WebhookOption

DEFAULT_HEADER = "x-hub-signature-256"
DEFAULT_PREFIX = "sha256="
STRIPE_HEADER = "stripe-signature"
STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_SIGNATURE = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)
DELIVERY_HEADERS = {"github": "x-github-delivery", "standard": STANDARD_ID}
MESSAGE = "Webhook signature verification failed"


def _fail(reason: str) -> SmithersError:
    return SmithersError("UNAUTHORIZED", MESSAGE, {"reason": reason})


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


DELIVERY_PATHS = {"stripe": "id"}


def delivery_header(option: WebhookOption) -> str | None:
    """The header naming a delivery's id, if replay protection reads one for ``option``."""
    if option.delivery_id_path is not None:
        return None
    header = option.delivery_id_header or DELIVERY_HEADERS.get(option.scheme)
    return header.strip().lower() if header else None


def delivery_path(option: WebhookOption) -> str | None:
    """The JSON path of a delivery's id in its body (Stripe's event ``id`` by default)."""
    if option.delivery_id_header is not None:
        return None
    return option.delivery_id_path or DELIVERY_PATHS.get(option.scheme)


def _timestamp(raw: str | None, now_s: float, tolerance_s: int) -> str:
    if raw is None or not raw.strip().isdigit():
        raise _fail("missing_timestamp")
    ts = int(raw.strip())
    if ts < now_s - tolerance_s:
        raise _fail("stale_timestamp")
    if ts > now_s + tolerance_s:
        raise _fail("future_timestamp")
    return raw.strip()


def _hex_scheme(option: WebhookOption, headers: Mapping[str, str], body: bytes) -> None:
    name = (option.signature_header or DEFAULT_HEADER).strip().lower()
    prefix = DEFAULT_PREFIX if option.signature_prefix is None else option.signature_prefix
    given = headers.get(name)
    if given is None:
        raise _fail("missing_signature")
    if not given.startswith(prefix):
        raise _fail("wrong_prefix")
    for secret in option.all_secrets():
        expected = prefix + _hmac(secret.encode(), body).hex()
        if hmac.compare_digest(given.encode(), expected.encode()):
            return
    raise _fail("mismatch")


def _stripe(option: WebhookOption, headers: Mapping[str, str], body: bytes, now_s: float) -> None:
    given = headers.get((option.signature_header or STRIPE_HEADER).strip().lower())
    if given is None:
        raise _fail("missing_signature")
    parts = [p.split("=", 1) for p in given.split(",") if "=" in p]
    stamps = [v.strip() for k, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, v in parts if k.strip() == "v1"]
    if not signatures:
        raise _fail("wrong_prefix")
    ts = _timestamp(stamps[0] if stamps else None, now_s, option.timestamp_tolerance_s)
    signed = ts.encode() + b"." + body
    for secret in option.all_secrets():
        expected = _hmac(secret.encode(), signed).hex()
        if any(hmac.compare_digest(s.encode(), expected.encode()) for s in signatures):
            return
    raise _fail("mismatch")


def _standard_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret[len("whsec_") :], validate=True)
        except (binascii.Error, ValueError):
            pass
    return secret.encode()


def _standard(option: WebhookOption, headers: Mapping[str, str], body: bytes, now_s: float) -> None:
    msg_id = headers.get(STANDARD_ID)
    given = headers.get(STANDARD_SIGNATURE)
    if msg_id is None or given is None:
        raise _fail("missing_signature")
    ts = _timestamp(headers.get(STANDARD_TIMESTAMP), now_s, option.timestamp_tolerance_s)
    signatures = [p[3:] for p in given.split() if p.startswith("v1,")]
    if not signatures:
        raise _fail("wrong_prefix")
    signed = f"{msg_id}.{ts}.".encode() + body
    for secret in option.all_secrets():
        expected = base64.b64encode(_hmac(_standard_key(secret), signed)).decode()
        if any(hmac.compare_digest(s.encode(), expected.encode()) for s in signatures):
            return
    raise _fail("mismatch")


def verify(option: WebhookOption, headers: Mapping[str, str], body: bytes, now_ms: int) -> None:
    """Raise ``UNAUTHORIZED`` unless ``body`` is signed by one of the option's secrets."""
    now_s = now_ms / 1000
    if option.scheme == "stripe":
        _stripe(option, headers, body, now_s)
    elif option.scheme == "standard":
        _standard(option, headers, body, now_s)
    else:
        _hex_scheme(option, headers, body)
