"""TLS settings -> an `ssl.SSLContext`, built once at startup (reading certificate files)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

from bulkfetch.errors import SettingsError
from bulkfetch.models import Tls


def context(tls: Tls) -> ssl.SSLContext | bool:
    """The context for the session; True (aiohttp's default verification) when nothing is set.
    Each file is loaded on its own, so a bad one is named: `--cacert 'ca.pem': no PEM data`."""
    if tls == Tls():
        return True
    if tls.cacert is not None:
        # Only these CAs, as curl's --cacert: the system's store is not loaded beside them.
        with _naming("--cacert", tls.cacert):
            ctx = ssl.create_default_context(cafile=str(tls.cacert))
    else:
        ctx = ssl.create_default_context()
    if tls.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.cert is not None:
        with _naming("--cert" if tls.key is None else "--cert/--key", tls.cert):
            ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    return ctx


@contextlib.contextmanager
def _naming(option: str, path: Path) -> Iterator[None]:
    try:
        yield
    except ssl.SSLError as exc:  # before OSError, its base
        raise SettingsError(f"{option} {str(path)!r}: not a usable certificate or key "
                            f"({_reason(exc)})") from exc
    except OSError as exc:
        raise SettingsError(f"{option} {str(path)!r}: cannot read: {exc.strerror or exc}"
                            ) from exc


def _reason(exc: ssl.SSLError) -> str:
    """OpenSSL's reason in words: `NO_CERTIFICATE_OR_CRL_FOUND` -> `no certificate or crl
    found`; its catch-all `PEM lib` says only that the file is not the PEM it should be."""
    reason = getattr(exc, "reason", None)
    if not reason or reason == "PEM lib":
        return "no PEM certificate or key it can use, or a key that does not match"
    return str(reason).replace("_", " ").lower()
