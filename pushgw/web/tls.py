"""The server's SSLContext from ``tls_server_config``.

uvicorn's ``ssl_*`` parameters cannot set a minimum or maximum TLS version,
so pushgw builds the context itself and hands it to uvicorn.
"""

from __future__ import annotations

import os
import ssl
import tempfile

from pushgw.web.webconfig import CLIENT_AUTH, TLSSettings, WebConfig, WebConfigError


def build_ssl_context(config: WebConfig) -> ssl.SSLContext:
    """A server context as the file asks for; raises WebConfigError naming what failed."""
    tls = config.tls
    assert tls is not None

    def fail(message: str) -> WebConfigError:
        return WebConfigError(f'web config file "{config.path}": tls_server_config: {message}')

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.minimum_version = tls.min_version
        ctx.maximum_version = tls.max_version
    except (ValueError, ssl.SSLError) as err:
        raise fail(f"TLS versions {tls.min_version.name}..{tls.max_version.name} not available: {err}") from None
    if tls.prefer_server_cipher_suites:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_certificate(ctx, tls, fail)
    ctx.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    if ctx.verify_mode != ssl.CERT_NONE:
        try:
            if tls.client_ca_file:
                ctx.load_verify_locations(cafile=tls.client_ca_file)
            elif tls.client_ca:
                ctx.load_verify_locations(cadata=tls.client_ca)
            else:  # Go verifies against the system's roots when no client CA is given
                ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
        except FileNotFoundError:
            raise fail(f"client_ca_file {tls.client_ca_file}: no such file") from None
        except (OSError, ssl.SSLError, ValueError) as err:
            source = f"client_ca_file {tls.client_ca_file}" if tls.client_ca_file else "client_ca"
            raise fail(f"cannot load {source} as PEM certificates: {err}") from None
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _load_certificate(ctx: ssl.SSLContext, tls: TLSSettings, fail) -> None:
    """Load the server certificate and key from files or inline PEM."""
    for name, path in (("cert_file", tls.cert_file), ("key_file", tls.key_file)):
        if path and not os.path.isfile(path):
            raise fail(f"failed to read {name} ({path}): no such file")
    with tempfile.TemporaryDirectory(prefix="pushgw-tls-") as private:  # mode 0700
        cert_file = tls.cert_file or _write(private, "cert.pem", tls.cert)
        key_file = tls.key_file or _write(private, "key.pem", tls.key)
        try:
            ctx.load_cert_chain(certfile=cert_file, keyfile=key_file)
        except (OSError, ssl.SSLError) as err:
            cert = tls.cert_file or "cert (inline)"
            key = tls.key_file or "key (inline)"
            raise fail(f"failed to load the certificate {cert} with the key {key}: {err}") from None


def _write(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w", encoding="utf-8") as f:
        f.write(text)
    return path
