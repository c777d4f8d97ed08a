"""Running the app under uvicorn on the official's listen addresses."""

from __future__ import annotations

import logging
import signal
import socket
from typing import TYPE_CHECKING

import uvicorn

from pushgw import __version__
from pushgw.app import build_app
from pushgw.config import Settings, split_listen_address
from pushgw.gateway import Gateway
from pushgw.storage.engine import DatabaseError
from pushgw.storage.sqlite import check_file

if TYPE_CHECKING:
    from pushgw.web.reload import LiveWebConfig

log = logging.getLogger("pushgw")


def bind(address: str) -> socket.socket:
    """A listening socket for ``host:port``; an empty host means every interface (v4 and v6)."""
    host, port = split_listen_address(address)
    if host == "":
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            host = "::"
        except OSError:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _log_signal(sig: int, frame: object) -> None:
    log.info("received SIGINT/SIGTERM; exited gracefully")


def _set_tls(config: uvicorn.Config, web_config: LiveWebConfig | None) -> None:
    """Serve TLS with pushgw's own SSLContext (uvicorn's ssl_* options cannot set
    TLS versions): loading the config first keeps uvicorn from replacing it."""
    if web_config is None or web_config.ssl_context is None:
        log.info("TLS is disabled.", extra={"http2": False})
        return
    config.load()
    config.ssl = web_config.ssl_context
    tls = web_config.config.tls
    assert tls is not None
    log.info("TLS is enabled.", extra={
        "http2": False, "client_auth_type": tls.client_auth_type,
        "min_version": tls.min_version.name, "max_version": tls.max_version.name})


def serve(settings: Settings) -> int:
    """Serve until SIGINT/SIGTERM or ``/-/quit``; returns the exit code."""
    log.info("starting pushgw", extra={"version": __version__})
    if settings.persistence_file:
        check_file(settings.persistence_file)  # refuse a foreign or broken file before serving
    web_config = None
    if settings.web_config_file:  # pushgw.web (TLS, bcrypt, YAML) is imported only when used
        from pushgw.web.reload import LiveWebConfig
        from pushgw.web.webconfig import load_web_config

        web_config = LiveWebConfig(load_web_config(settings.web_config_file))
    sockets = [bind(address) for address in settings.listen_addresses]
    server: uvicorn.Server | None = None

    def shutdown() -> None:
        log.warning("received termination request via web service, exiting gracefully...")
        if server is not None:
            server.should_exit = True

    gateway = Gateway(settings, on_shutdown_request=shutdown)
    config = uvicorn.Config(
        build_app(gateway, web_config),
        loop="auto",
        http="auto",
        ws="none",  # as the official: no WebSockets (and no import of a WebSockets library)
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=int(settings.idle_timeout),
    )
    _set_tls(config, web_config)
    server = uvicorn.Server(config)
    for address in settings.listen_addresses:
        log.info("listening", extra={"address": address})
    # uvicorn re-raises a caught SIGTERM/SIGINT to the handlers it found once it
    # has shut down; make those a log line so a graceful stop exits 0, as the official does.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _log_signal)
    server.run(sockets=sockets)
    log.info("HTTP server stopped")
    if gateway.fatal is not None:  # the database was refused once start-up had begun
        raise DatabaseError(gateway.fatal)
    return 0
