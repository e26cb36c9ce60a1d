"""AWS Signature Version 4 for one S3 request, in the header form (no I/O).

botocore signs each request through its request model, event hooks and a fresh signing key:
about a third of its 1.5 ms per small PUT (bench/s3_clients.py). A PUT of a body we hold whole
needs none of that: the canonical request is a few lines, the signing key changes once a day,
and the payload's sha256 is the one we keep anyway. The rules are botocore's `S3SigV4Auth`
(tests/test_s3_put.py checks our header against it): S3's path is signed as sent, never
normalised; every header sent is signed; a value's runs of spaces become one.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ALGORITHM = "AWS4-HMAC-SHA256"
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True, slots=True)
class Keys:
    """One moment's credentials (botocore's frozen ones): never printed, never logged."""

    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a signature is valid: the region and service of botocore's own signing."""

    region: str
    service: str = "s3"


class Signer:
    """Signs requests for one scope; keeps the day's signing key (four HMACs) per secret."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._keys: dict[tuple[bytes, str], bytes] = {}  # by a digest: no secret kept twice

    def sign(self, method: str, url: str, headers: dict[str, str], *, payload_sha256: str,
             keys: Keys, now: datetime.datetime) -> dict[str, str]:
        """The headers to send: `headers` with host, date, payload hash, session token and
        Authorization added; every one of them signed. `url` is sent as is (its path
        already percent-encoded, no query)."""
        stamp = now.astimezone(datetime.UTC).strftime(_TIMESTAMP)
        parts = urlsplit(url)
        sent = {name.lower(): value for name, value in headers.items()}
        sent.update({"host": parts.netloc, "x-amz-date": stamp,
                     "x-amz-content-sha256": payload_sha256})
        if keys.token:
            sent["x-amz-security-token"] = keys.token
        names = sorted(sent)
        canonical = "\n".join((
            method, parts.path or "/", parts.query,  # PUT Object: no query
            "".join(f"{name}:{' '.join(sent[name].split())}\n" for name in names),
            ";".join(names), payload_sha256))
        scope = f"{stamp[:8]}/{self.scope.region}/{self.scope.service}/aws4_request"
        to_sign = "\n".join((ALGORITHM, stamp, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()))
        signature = hmac.new(self._key(keys.secret_key, stamp[:8]), to_sign.encode(),
                             hashlib.sha256).hexdigest()
        sent["authorization"] = (f"{ALGORITHM} Credential={keys.access_key}/{scope}, "
                                 f"SignedHeaders={';'.join(names)}, Signature={signature}")
        return sent

    def _key(self, secret: str, day: str) -> bytes:
        which = (hashlib.sha256(secret.encode()).digest(), day)
        found = self._keys.get(which)
        if found is None:
            found = f"AWS4{secret}".encode()
            for part in (day, self.scope.region, self.scope.service, "aws4_request"):
                found = hmac.new(found, part.encode(), hashlib.sha256).digest()
            self._keys = {which: found}  # one secret and day at a time
        return found

