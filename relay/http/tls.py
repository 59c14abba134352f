"""TLS when Relay terminates it itself: TLS 1.2 and 1.3 only, ECDHE with AEAD suites only."""

from __future__ import annotations

import ssl
from pathlib import Path

from relay.errors import SettingsError

TLS12_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
    ]
)


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context that refuses TLS < 1.2, non-AEAD suites and suites without forward secrecy.

    TLS 1.3's suites are all AEAD with ephemeral key exchange, so only 1.2 needs a list.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    for setting, path in (("RELAY_TLS_CERT", cert), ("RELAY_TLS_KEY", key)):
        if not path.is_file():
            raise SettingsError(f"{setting}: {path} does not exist")
    try:
        context.load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as error:
        raise SettingsError(f"RELAY_TLS_CERT/RELAY_TLS_KEY: cannot load the certificate and key: {error}") from None
    return context
