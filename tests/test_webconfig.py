"""--web.config.file: TLS with real handshakes, client certificates, basic auth,
pushgw's roles, extra headers, and files that must stop start-up.

Certificates are made here with ``cryptography``; clients are curl, urllib
and prometheus-client's ``basic_auth_handler`` / ``tls_auth_handler``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import ipaddress
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path

import bcrypt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import basic_auth_handler, push_to_gateway, tls_auth_handler

from pushgw.web.auth import PasswordChecker, required_right, rights_of, token_user
from pushgw.web.webconfig import WebConfigError, load_web_config
from tests.servers import REPO_ROOT, require_peer, start_prometheus, start_pushgw

# --- certificates ------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool = False,
                 server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False, data_encipherment=False,
                          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        sans = ([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                if server else [x509.DNSName(subject)])
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_pair(directory: Path, stem: str, cert: x509.Certificate, key) -> tuple[str, str]:
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, str]:
    """A CA, a server certificate for 127.0.0.1 and client certificates, as PEM files."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate("pushgw test CA", ca_key, _name("pushgw test CA"), ca_key, ca=True)
    files = {}
    files["ca"], _ = _write_pair(directory, "ca", ca_cert, ca_key)
    server_key = ec.generate_private_key(ec.SECP256R1())
    files["server_cert"], files["server_key"] = _write_pair(
        directory, "server", _certificate("pushgw", server_key, ca_cert.subject, ca_key, server=True),
        server_key)
    client_key = ec.generate_private_key(ec.SECP256R1())
    files["client_cert"], files["client_key"] = _write_pair(
        directory, "client", _certificate("pusher", client_key, ca_cert.subject, ca_key), client_key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    files["rogue_cert"], files["rogue_key"] = _write_pair(
        directory, "rogue", _certificate("rogue", rogue_key, _name("rogue"), rogue_key), rogue_key)
    files["dir"] = str(directory)
    return files


def client_context(pki: dict[str, str], cert: str | None = None,
                   max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that trusts the test CA and may present a certificate."""
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        ctx.load_cert_chain(pki[f"{cert}_cert"], pki[f"{cert}_key"])
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def write_config(directory: Path | str, text: str, name: str = "web.yml") -> str:
    path = Path(directory) / name
    path.write_text(text)
    return str(path)


# --- users -----------------------------------------------------------------------------

PASSWORDS = {"alice": "alice-pw", "pusher": "push-pw", "reader": "read-pw", "boss": "boss-pw"}
ROLES_YAML = """
pushgw_authorization:
  pusher: push
  reader: read
  boss: [admin]
"""


@pytest.fixture(scope="module")
def users_yaml() -> str:
    """basic_auth_users with cost-4 hashes (cheap to check) and $2y$, as htpasswd writes."""
    lines = ["basic_auth_users:"]
    for user, password in PASSWORDS.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        lines.append(f"  {user}: {hashed.replace('$2b$', '$2y$', 1)}")
    return "\n".join(lines) + "\n"


def auth(user: str, password: str | None = None) -> dict[str, str]:
    token = f"{user}:{password or PASSWORDS[user]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def request(method: str, url: str, headers: dict[str, str] | None = None, body: bytes | None = None,
            context: ssl.SSLContext | None = None) -> tuple[int, Message, bytes]:
    """(status, headers (case-insensitive), body) from urllib, HTTP errors included."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5, context=context) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def curl(*args: str) -> subprocess.CompletedProcess:
    binary = require_peer("curl", shutil.which("curl") or "/usr/bin/curl")
    return subprocess.run([binary, "-sS", "--max-time", "5", *args],
                          capture_output=True, text=True, timeout=10)


def registry_with(value: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge("webconfig_test_value", "A value pushed by the web config test.", registry=registry).set(value)
    return registry


# --- TLS ---------------------------------------------------------------------------------


def test_tls_handshake_versions_and_plain_http_refused(pki, make_pushgw):
    config = write_config(pki["dir"], f"""
tls_server_config:
  cert_file: server.crt   # relative to the config file, as in the toolkit
  key_file: {pki['server_key']}
  min_version: TLS13
""", "tls13.yml")
    gw = make_pushgw(f"--web.config.file={config}", scheme="https", ready_context=client_context(pki))
    assert gw.url.startswith("https://")
    status, _, body = request("PUT", gw.url + "/metrics/job/tls", body=b"tls_ok 1\n",
                              context=client_context(pki))
    assert status == 200
    with ssl.create_connection(("127.0.0.1", gw.port)) as raw, \
            client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() == "TLSv1.3"
    with pytest.raises(OSError):  # the server refuses TLS 1.2 (min_version: TLS13)
        request("GET", gw.url + "/-/ready", context=client_context(pki, max_version=ssl.TLSVersion.TLSv1_2))
    with pytest.raises(OSError):  # plain HTTP to the TLS port gets no HTTP answer
        request("GET", gw.url.replace("https://", "http://") + "/-/ready")
    done = curl("--cacert", pki["ca"], gw.url + "/metrics")
    assert done.returncode == 0 and 'tls_ok{instance="",job="tls"} 1' in done.stdout
    refused = curl("--cacert", pki["ca"], "--tls-max", "1.2", gw.url + "/metrics")
    assert refused.returncode != 0
    assert "TLS is enabled." in gw.output() and "min_version=TLSv1_3" in gw.output()


def test_client_certificates_required_and_verified(pki, make_pushgw):
    config = write_config(pki["dir"], f"""
tls_server_config:
  cert_file: {pki['server_cert']}
  key_file: {pki['server_key']}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: ca.crt
""", "mtls.yml")
    gw = make_pushgw(f"--web.config.file={config}", scheme="https",
                     ready_context=client_context(pki, "client"))
    handler = functools.partial(tls_auth_handler, certfile=pki["client_cert"],
                                keyfile=pki["client_key"], cafile=pki["ca"])
    push_to_gateway(gw.url, job="mtls", registry=registry_with(7), handler=handler)
    status, _, body = request("GET", gw.url + "/metrics", context=client_context(pki, "client"))
    assert status == 200 and b'webconfig_test_value{instance="",job="mtls"} 7' in body
    with pytest.raises(OSError):  # no client certificate
        request("GET", gw.url + "/metrics", context=client_context(pki))
    with pytest.raises(OSError):  # a certificate the client CA did not sign
        request("GET", gw.url + "/metrics", context=client_context(pki, "rogue"))
    rogue = functools.partial(tls_auth_handler, certfile=pki["rogue_cert"],
                              keyfile=pki["rogue_key"], cafile=pki["ca"])
    with pytest.raises(OSError):
        push_to_gateway(gw.url, job="rogue", registry=registry_with(1), handler=rogue)
    assert curl("--cacert", pki["ca"], gw.url + "/-/healthy").returncode != 0
    good = curl("--cacert", pki["ca"], "--cert", pki["client_cert"], "--key", pki["client_key"],
                gw.url + "/-/healthy")
    assert good.returncode == 0 and good.stdout == "OK"
    assert gw.alive()


def test_client_certificate_verified_if_given(pki, make_pushgw):
    config = write_config(pki["dir"], f"""
tls_server_config:
  cert_file: {pki['server_cert']}
  key_file: {pki['server_key']}
  client_auth_type: VerifyClientCertIfGiven
  client_ca_file: {pki['ca']}
""", "optional.yml")
    gw = make_pushgw(f"--web.config.file={config}", scheme="https", ready_context=client_context(pki))
    assert request("GET", gw.url + "/-/healthy", context=client_context(pki))[0] == 200
    assert request("GET", gw.url + "/-/healthy", context=client_context(pki, "client"))[0] == 200
    with pytest.raises(OSError):
        request("GET", gw.url + "/-/healthy", context=client_context(pki, "rogue"))


# --- basic auth, roles, headers ---------------------------------------------------------


@pytest.fixture(scope="module")
def auth_gw(tmp_path_factory, users_yaml):
    """One plain-HTTP pushgw with users, roles, extra headers and the admin and lifecycle APIs."""
    directory = tmp_path_factory.mktemp("auth")
    config = write_config(directory, users_yaml + ROLES_YAML + """
http_server_config:
  headers:
    X-Frame-Options: deny
    Content-Security-Policy: "default-src 'self'"
    Strict-Transport-Security: max-age=31536000
""")
    gw = start_pushgw(f"--web.config.file={config}", "--web.enable-admin-api",
                      "--web.enable-lifecycle", ready_headers=auth("reader"))
    yield gw
    gw.close()


def test_missing_or_wrong_credentials_are_401_with_basic_challenge(auth_gw):
    url = auth_gw.url
    for headers in ({}, auth("alice", "wrong"), auth("nobody", "alice-pw"),
                    {"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!"}):
        for path in ("/metrics", "/-/healthy", "/-/ready", "/api/v1/status", "/", "/nope"):
            status, response_headers, body = request("GET", url + path, headers)
            assert (status, body) == (401, b"Unauthorized\n"), (headers, path)
            assert response_headers["WWW-Authenticate"] == "Basic"
            assert response_headers["X-Frame-Options"] == "deny"  # headers on every response
    status, _, _ = request("PUT", url + "/metrics/job/x", auth("alice", "wrong"), b"a 1\n")
    assert status == 401
    assert curl("-o", "/dev/null", "-w", "%{http_code}", url + "/metrics").stdout == "401"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", "-u", "alice:nope", url + "/metrics").stdout == "401"


def test_good_credentials_with_curl_and_prometheus_client(auth_gw):
    url = auth_gw.url
    put = curl("-u", "alice:alice-pw", "-X", "PUT", "--data-binary", "curl_pushed 3\n",
               "-o", "/dev/null", "-w", "%{http_code}", url + "/metrics/job/curl")
    assert put.stdout == "200"
    handler = functools.partial(basic_auth_handler, username="pusher", password="push-pw")
    push_to_gateway(url, job="client", registry=registry_with(5), handler=handler)
    wrong = functools.partial(basic_auth_handler, username="pusher", password="nope")
    with pytest.raises(urllib.error.HTTPError) as refused:
        push_to_gateway(url, job="client", registry=registry_with(6), handler=wrong)
    assert refused.value.code == 401
    scrape = curl("-u", "reader:read-pw", "-D", "-", url + "/metrics")
    assert 'curl_pushed{instance="",job="curl"} 3' in scrape.stdout
    assert 'webconfig_test_value{instance="",job="client"} 5' in scrape.stdout
    headers = scrape.stdout.lower()
    assert "x-frame-options: deny" in headers
    assert "content-security-policy: default-src 'self'" in headers
    assert "strict-transport-security: max-age=31536000" in headers


@pytest.mark.parametrize("user, method, path, status", [
    ("pusher", "PUT", "/metrics/job/r", 200),
    ("pusher", "POST", "/metrics/job/r/instance/i", 200),
    ("pusher", "DELETE", "/metrics/job/r/instance/i", 202),
    ("pusher", "GET", "/metrics", 403),
    ("pusher", "GET", "/api/v1/metrics", 403),
    ("pusher", "GET", "/-/healthy", 403),
    ("pusher", "PUT", "/api/v1/admin/wipe", 403),
    ("pusher", "PUT", "/-/quit", 403),
    ("reader", "GET", "/metrics", 200),
    ("reader", "GET", "/api/v1/metrics", 200),
    ("reader", "GET", "/api/v1/status", 200),
    ("reader", "GET", "/", 200),
    ("reader", "GET", "/-/healthy", 200),
    ("reader", "PUT", "/metrics/job/r", 403),
    ("reader", "DELETE", "/metrics/job/r", 403),
    ("reader", "PUT", "/api/v1/admin/wipe", 403),
    ("reader", "PUT", "/api//v1/admin/../admin/wipe", 403),
    ("boss", "PUT", "/metrics/job/r", 200),
    ("boss", "GET", "/metrics", 200),
    ("boss", "PUT", "/api/v1/admin/wipe", 202),
    ("alice", "PUT", "/metrics/job/r", 200),  # no role entry: full access, as in the official
    ("alice", "PUT", "/api/v1/admin/wipe", 202),
])
def test_roles(auth_gw, user, method, path, status):
    body = b"role_test 1\n" if method in ("PUT", "POST") and "/job/" in path else None
    got, _, text = request(method, auth_gw.url + path, auth(user), body)
    assert got == status, text
    if status == 403:
        assert b"needs the" in text and user.encode() in text


def test_bcrypt_runs_once_per_credentials(auth_gw, users_yaml):
    """A push must not cost a bcrypt each time: results are cached under a keyed digest."""
    users = {u: h.encode() for u, h in
             (line.strip().split(": ") for line in users_yaml.splitlines()[1:])}
    checker = PasswordChecker(users)

    async def run() -> list[bool]:
        results = [await checker.check("alice", b"alice-pw") for _ in range(50)]
        results += [await checker.check("alice", b"wrong") for _ in range(5)]
        results += [await checker.check("ghost", b"alice-pw") for _ in range(5)]
        return results

    results = asyncio.run(run())
    assert results == [True] * 50 + [False] * 10
    assert checker.bcrypt_calls == 3
    assert all(b"alice-pw" not in key for key in checker._cache)

    started = time.monotonic()
    for i in range(30):
        assert request("PUT", auth_gw.url + f"/metrics/job/fast{i}", auth("alice"), b"f 1\n")[0] == 200
    assert time.monotonic() - started < 3


def test_required_right_and_rights():
    assert required_right("PUT", "/metrics/job/x", "") == "push"
    assert required_right("GET", "/metrics/job/x", "") == "read"
    assert required_right("PUT", "/p/metrics/job@base64/eA", "/p") == "push"
    assert required_right("PUT", "/p/api/v1/admin/wipe", "/p") == "admin"
    assert required_right("GET", "/p/api/v1/admin/wipe", "/p") == "admin"
    assert required_right("POST", "/-/quit", "/p") == "admin"
    assert required_right("PUT", "/x/../api/v1/admin/wipe", "") == "admin"
    assert required_right("GET", "/metrics", "") == "read"
    assert rights_of(None) == {"admin", "push", "read"}
    assert rights_of(frozenset({"push", "read"})) == {"push", "read"}


# --- reloading, as the official re-reads the file ------------------------------------------


def _server_pair(directory: Path, stem: str) -> tuple[str, str, str]:
    """A fresh CA and a server certificate for 127.0.0.1 it signed: (ca, cert, key) paths."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = _certificate(f"{stem} CA", ca_key, _name(f"{stem} CA"), ca_key, ca=True)
    ca_path, _ = _write_pair(directory, f"{stem}-ca", ca_cert, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert_path, key_path = _write_pair(
        directory, stem, _certificate("pushgw", key, ca_cert.subject, ca_key, server=True), key)
    return ca_path, cert_path, key_path


def _served_certificate(port: int, context: ssl.SSLContext) -> x509.Certificate:
    with ssl.create_connection(("127.0.0.1", port)) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def _replace(target: Path | str, text: str | bytes) -> None:
    """Write a new version next to the file and rename it over, as tools rotating files do."""
    target = Path(target)
    temporary = target.with_name(target.name + ".new")
    temporary.write_bytes(text if isinstance(text, bytes) else text.encode())
    temporary.replace(target)


def test_rotated_certificate_new_users_and_broken_edits(tmp_path, users_yaml):
    old_ca, cert, key = _server_pair(tmp_path, "old")
    new_ca, new_cert, new_key = _server_pair(tmp_path, "new")
    trust_both = ssl.create_default_context(cafile=old_ca)
    trust_both.load_verify_locations(new_ca)
    tls = f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
    config = write_config(tmp_path, tls + users_yaml)
    gw = start_pushgw(f"--web.config.file={config}", scheme="https", ready_context=trust_both,
                      ready_headers=auth("alice"))
    try:
        first = _served_certificate(gw.port, trust_both)
        assert request("GET", gw.url + "/metrics", auth("carol", "carol-pw"), context=trust_both)[0] == 401
        _replace(cert, Path(new_cert).read_bytes())
        _replace(key, Path(new_key).read_bytes())
        carol = bcrypt.hashpw(b"carol-pw", bcrypt.gensalt(4)).decode()
        _replace(config, tls + users_yaml + f"  carol: {carol}\n")
        time.sleep(1.2)
        assert _served_certificate(gw.port, trust_both).serial_number != first.serial_number
        assert request("GET", gw.url + "/metrics", auth("carol", "carol-pw"), context=trust_both)[0] == 200
        _replace(config, "basic_auth_users: [\n")  # broken: the previous config stays in force
        time.sleep(1.2)
        assert request("GET", gw.url + "/metrics", auth("carol", "carol-pw"), context=trust_both)[0] == 200
        assert request("GET", gw.url + "/metrics", context=trust_both)[0] == 401
        assert "web config file reloaded" in gw.output()
        assert "cannot be used; keeping the previous one" in gw.output()
    finally:
        gw.close()


# --- files that must stop start-up -------------------------------------------------------

BAD_FILES = [
    ("tls_server_config: [", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("tls_server_config:\n  cert_filse: server.crt\n", 'unknown key "tls_server_config.cert_filse"'),
    ("basic_auth: {}\n", 'unknown key "basic_auth"'),
    ("basic_auth_users:\n  a: x\n  a: y\n", "duplicate key"),
    ("basic_auth_users:\n  alice: plaintext\n", "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users:\n  alice: $2y$03$" + "a" * 53 + "\n", "cost 3"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n", "missing one of key or key_file"),
    ("tls_server_config:\n  key_file: {dir}/server.key\n", "missing one of cert or cert_file"),
    ("tls_server_config:\n  cert_file: nope.crt\n  key_file: {dir}/server.key\n",
     "failed to read cert_file"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/client.key\n",
     "failed to load the certificate"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  client_ca_file: {dir}/ca.crt\n", "without a Client Auth Policy"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {dir}/gone.crt\n",
     "client_ca_file"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  client_auth_type: Sometimes\n", "invalid ClientAuth"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  client_auth_type: RequireAnyClientCert\n", "RequireAndVerifyClientCert with client_ca_file"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  min_version: TLS111\n", "unknown TLS version"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  min_version: TLS13\n  max_version: TLS12\n", "above max_version"),
    ("tls_server_config:\n  cert_file: {dir}/server.crt\n  key_file: {dir}/server.key\n"
     "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n", "cipher suites is not supported"),
    ("tls_server_config:\n  client_allowed_sans: [a]\n", "client_allowed_sans is not supported"),
    ("rate_limit:\n  interval: 1s\n  burst: 5\n", "rate limiting is not supported"),
    ("http_server_config:\n  headers:\n    Content-Type: foo\n", "'Content-Type' can not be configured"),
    ("http_server_config:\n  headers:\n    X-Frame-Options: allow\n", "invalid value for X-Frame-Options"),
    ("http_server_config:\n  http2: maybe\n", "http2: expected true or false"),
    ("pushgw_authorization:\n  alice: push\n", "needs basic_auth_users"),
    ("basic_auth_users:\n  alice: {hash}\npushgw_authorization:\n  bob: push\n",
     "'bob' is in neither basic_auth_users nor pushgw_bearer_tokens"),
    ("basic_auth_users:\n  alice: {hash}\npushgw_authorization:\n  alice: write\n", "unknown role 'write'"),
    ("basic_auth_users:\n  alice: {hash}\npushgw_authorization:\n  alice: []\n", "non-empty list of roles"),
    ("pushgw_bearer_tokens:\n  ci: my-secret-token\n", "pushgw_bearer_tokens.ci: not a SHA-256 digest"),
    ("pushgw_bearer_tokens:\n  ci: " + "a" * 63 + "\n", "pushgw_bearer_tokens.ci: not a SHA-256 digest"),
    ("pushgw_bearer_tokens:\n  ci: " + "g" * 64 + "\n", "pushgw_bearer_tokens.ci: not a SHA-256 digest"),
    ("pushgw_bearer_tokens:\n  ci: 12\n", "pushgw_bearer_tokens.ci: not a SHA-256 digest"),
    ("pushgw_bearer_tokens:\n  a: " + "b" * 64 + "\n  c: " + "B" * 64 + "\n", "have the same token digest"),
    ("pushgw_bearer_tokens: [abc]\n", "pushgw_bearer_tokens must be a mapping"),
]


@pytest.mark.parametrize("text, message", BAD_FILES, ids=[m for _, m in BAD_FILES])
def test_bad_file_is_refused_with_a_clear_message(pki, tmp_path, text, message):
    hashed = bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode()
    path = write_config(tmp_path, text.replace("{dir}", pki["dir"]).replace("{hash}", hashed))
    with pytest.raises(WebConfigError) as refused:
        load_web_config(path)
    assert message in str(refused.value) and path in str(refused.value)


def test_good_files_parse(pki, tmp_path, users_yaml):
    assert load_web_config(write_config(tmp_path, "")).tls is None
    inline = "tls_server_config:\n  cert: |\n{cert}  key: |\n{key}  client_auth_type: RequestClientCert\n"
    indent = lambda p: "".join("    " + line + "\n" for line in Path(p).read_text().splitlines())  # noqa: E731
    config = load_web_config(write_config(
        tmp_path, inline.format(cert=indent(pki["server_cert"]), key=indent(pki["server_key"]))))
    assert config.tls is not None and config.tls.client_auth_type == "RequestClientCert"
    config = load_web_config(write_config(tmp_path, users_yaml + ROLES_YAML))
    assert config.roles == {"pusher": {"push"}, "reader": {"read"}, "boss": {"admin"}}
    assert set(config.users) == set(PASSWORDS)


@pytest.mark.parametrize("text, message", [
    (None, "cannot read web config file"),
    ("tls_server_config: {cert_file: gone.crt, key_file: gone.key}\n", "failed to read cert_file"),
    ("basic_auth_users:\n  alice: secret\n", "not a bcrypt hash"),
    ("pushgw_bearer_tokens:\n  ci: secret\n", "not a SHA-256 digest"),
])
def test_bad_file_stops_the_real_process(tmp_path, text, message):
    path = tmp_path / "web.yml"
    if text is not None:
        path.write_text(text)
    done = subprocess.run([sys.executable, "-m", "pushgw", "--web.listen-address=127.0.0.1:0",
                           f"--web.config.file={path}"], capture_output=True, text=True,
                          timeout=20, cwd=REPO_ROOT)
    assert done.returncode == 1
    assert message in done.stderr and str(path) in done.stderr
    assert "Traceback" not in done.stderr


# --- bearer tokens -----------------------------------------------------------------------

TOKENS = {"ci": "ci-token-3f9a", "scraper": "scrape-token-77b1"}


def token_yaml(tokens: dict[str, str]) -> str:
    """pushgw_bearer_tokens with the digests `printf %s "$TOKEN" | sha256sum` prints."""
    lines = ["pushgw_bearer_tokens:"]
    for user, token in tokens.items():
        digest = subprocess.run(["sha256sum"], input=token.encode(), capture_output=True,
                                check=True).stdout.split()[0].decode()
        lines.append(f"  {user}: {digest}")
    return "\n".join(lines) + "\n"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_bearer_tokens_alone_turn_auth_on_apply_roles_and_reload(tmp_path):
    roles = "pushgw_authorization:\n  ci: push\n  scraper: read\n"
    config = write_config(tmp_path, token_yaml(TOKENS) + roles)
    gw = start_pushgw(f"--web.config.file={config}", ready_headers=bearer(TOKENS["scraper"]))
    try:
        url = gw.url
        for headers in ({}, bearer("wrong"), bearer(TOKENS["ci"] + "x"), auth("alice"), {"Authorization": "Bearer "}):
            status, response_headers, body = request("GET", url + "/metrics", headers)
            assert (status, body) == (401, b"Unauthorized\n"), headers
            assert response_headers.get_all("WWW-Authenticate")[0].startswith("Bearer")
        assert request("GET", url + "/metrics", bearer("wrong"))[1]["WWW-Authenticate"] == \
            'Bearer error="invalid_token"'
        # The right token, with the role its user has; the scheme is case-insensitive.
        assert request("PUT", url + "/metrics/job/t", bearer(TOKENS["ci"]), b"tok 1\n")[0] == 200
        assert request("PUT", url + "/metrics/job/t", {"Authorization": "bearer " + TOKENS["ci"]},
                       b"tok 2\n")[0] == 200
        status, _, body = request("GET", url + "/metrics", bearer(TOKENS["ci"]))
        assert status == 403 and b"needs the read role" in body
        status, _, body = request("GET", url + "/metrics", bearer(TOKENS["scraper"]))
        assert status == 200 and b'tok{instance="",job="t"} 2' in body
        assert request("PUT", url + "/metrics/job/t", bearer(TOKENS["scraper"]), b"tok 3\n")[0] == 403
        # curl's --oauth2-bearer, as a CI job would push.
        put = curl("--oauth2-bearer", TOKENS["ci"], "-X", "PUT", "--data-binary", "tok 4\n",
                   "-o", "/dev/null", "-w", "%{http_code}", url + "/metrics/job/t")
        assert put.stdout == "200"
        # A new token is picked up with the rest of the file; a removed one stops working.
        _replace(config, token_yaml({"deploy": "deploy-token", "scraper": TOKENS["scraper"]}))
        time.sleep(1.2)
        assert request("PUT", url + "/metrics/job/t", bearer("deploy-token"), b"tok 5\n")[0] == 200
        assert request("PUT", url + "/metrics/job/t", bearer(TOKENS["ci"]), b"tok 6\n")[0] == 401
        # No role entry any more: full access, as for a basic auth user without one.
        assert request("PUT", url + "/metrics/job/t", bearer(TOKENS["scraper"]), b"tok 7\n")[0] == 200
        assert "web config file reloaded" in gw.output()
    finally:
        gw.close()


def test_bearer_tokens_beside_basic_auth_users(tmp_path, users_yaml):
    config = write_config(tmp_path, users_yaml + token_yaml(TOKENS) + ROLES_YAML + "  ci: push\n")
    gw = start_pushgw(f"--web.config.file={config}", ready_headers=auth("reader"))
    try:
        url = gw.url
        status, headers, _ = request("GET", url + "/metrics")
        assert status == 401 and headers.get_all("WWW-Authenticate") == ["Basic", "Bearer"]
        status, headers, _ = request("GET", url + "/metrics", bearer("nope"))
        assert headers.get_all("WWW-Authenticate") == ["Basic", 'Bearer error="invalid_token"']
        assert request("GET", url + "/metrics", auth("alice", "wrong"))[0] == 401
        assert request("PUT", url + "/metrics/job/b", bearer(TOKENS["ci"]), b"both 1\n")[0] == 200
        assert request("PUT", url + "/metrics/job/b", auth("pusher"), b"both 2\n")[0] == 200
        assert request("GET", url + "/metrics", bearer(TOKENS["ci"]))[0] == 403
        assert b"both{" in request("GET", url + "/metrics", auth("reader"))[2]
        # The Java client's and Prometheus' bearer: the token user with no role gets everything.
        assert request("GET", url + "/metrics", bearer(TOKENS["scraper"]))[0] == 200
    finally:
        gw.close()


def test_token_user_compares_every_digest():
    digest = hashlib.sha256(b"t0k").digest()
    tokens = {"a": hashlib.sha256(b"other").digest(), "b": digest}
    assert token_user(tokens, b"t0k") == "b"
    assert token_user(tokens, b"t0K") is None and token_user({}, b"t0k") is None


def test_prometheus_scrapes_with_a_bearer_token(tmp_path):
    """Prometheus' own `authorization` scrape setting, against a real Prometheus."""
    config = write_config(tmp_path, token_yaml(TOKENS) + "pushgw_authorization:\n  scraper: read\n")
    gw = start_pushgw(f"--web.config.file={config}", ready_headers=bearer(TOKENS["scraper"]))
    (tmp_path / "token").write_text(TOKENS["scraper"])
    jobs = [("right", tmp_path / "token"), ("wrong", tmp_path / "wrong")]
    (tmp_path / "wrong").write_text("not-the-token")
    scrape = ["global:", "  scrape_interval: 1s", "  scrape_timeout: 1s", "scrape_configs:"]
    for name, token_file in jobs:
        scrape += [f"  - job_name: {name}", f"    authorization: {{credentials_file: '{token_file}'}}",
                   "    static_configs:", f"      - targets: ['127.0.0.1:{gw.port}']"]
    prometheus = start_prometheus("\n".join(scrape) + "\n", tmp_path, ready_timeout=20)
    try:
        deadline = time.monotonic() + 30
        while True:
            r = requests.get(prometheus.url + "/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
            health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in r}
            scraped = len(health) == 2 and all(h != "unknown" for h, _ in health.values())
            if scraped or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert health["right"] == ("up", ""), health
        assert health["wrong"][0] == "down" and "401" in health["wrong"][1], health
    finally:
        prometheus.close()
        gw.close()
