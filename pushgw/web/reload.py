"""The web config as it is now: re-read when the file or its certificates change.

The official re-reads the file on every request and every TLS handshake, so
rotated certificates and new users take effect without a restart. pushgw
does the same, but looks at the files at most once a second (a stat, not a
parse), and keeps the previous config when the new one is broken: a typo in
the file must not lock every pusher out (the official answers 500 then).
Switching TLS on or off needs a restart, since the listener is TLS or not.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable

from pushgw.web.tls import build_ssl_context
from pushgw.web.webconfig import WebConfig, WebConfigError, load_web_config

log = logging.getLogger("pushgw.web")

CHECK_INTERVAL = 1.0  # seconds between looks at the files' metadata


def _stamp(config: WebConfig) -> tuple:
    """What changes when the file or a file it names is replaced or rewritten."""
    paths = [config.path]
    if config.tls is not None:
        paths += [config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file]
    stamps = []
    for path in paths:
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        stamps.append(None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino))
    return tuple(stamps)


class LiveWebConfig:
    """Holds the current WebConfig and SSLContext; ``current()`` reloads them when files change."""

    def __init__(self, config: WebConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.ssl_context = build_ssl_context(config) if config.tls is not None else None
        self._clock = clock
        self._stamp = _stamp(config)
        self._checked = clock()
        if self.ssl_context is not None:
            self.ssl_context.sni_callback = self._on_client_hello

    def current(self) -> WebConfig:
        now = self._clock()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            self._reload_if_changed()
        return self.config

    def _reload_if_changed(self) -> None:
        stamp = _stamp(self.config)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            config = load_web_config(self.config.path)
            context = build_ssl_context(config) if config.tls is not None else None
        except WebConfigError as err:
            log.error("web config file changed but cannot be used; keeping the previous one",
                      extra={"err": str(err)})
            return
        if (config.tls is None) != (self.config.tls is None):
            log.error("web config file changed: switching TLS on or off needs a restart; "
                      "keeping the previous config", extra={"file": config.path})
            return
        self.config, self.ssl_context = config, context
        self._stamp = _stamp(config)  # the new file may name other certificate files
        log.info("web config file reloaded", extra={"file": config.path})

    def _on_client_hello(self, connection: ssl.SSLObject, server_name: str | None,
                         context: ssl.SSLContext) -> None:
        """Every handshake starts on the first context; switch it to the current one."""
        self.current()
        if self.ssl_context is not None and self.ssl_context is not context:
            connection.context = self.ssl_context
