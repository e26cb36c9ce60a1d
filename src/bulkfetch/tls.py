"""TLS settings -> an `ssl.SSLContext`, built once at startup (reading certificate files)."""

from __future__ import annotations

import ssl

from bulkfetch.errors import SettingsError
from bulkfetch.models import Tls


def context(tls: Tls) -> ssl.SSLContext | bool:
    """The context for the session; True (aiohttp's default verification) when nothing is set."""
    if tls == Tls():
        return True
    try:
        ctx = ssl.create_default_context(cafile=str(tls.cacert) if tls.cacert else None)
        if tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if tls.cert is not None:
            ctx.load_cert_chain(str(tls.cert), str(tls.key) if tls.key else None)
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"TLS files: {exc.strerror or exc}") from exc
    return ctx
