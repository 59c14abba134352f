"""Relay terminating TLS itself: TLS 1.2+ only, ECDHE with AEAD only, HSTS on every response.

Each refusal is paired with a control: the same client handshake succeeds against a permissive
local TLS server, so a refusal proves Relay's policy and not a client unable to offer it.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import socket
import ssl
import stat
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.subprocess_relay import ServedRelay, relay_env, run_relay, serving

ClientSetup = Callable[[ssl.SSLContext], None]


def dev_cert(directory: Path) -> tuple[Path, Path]:
    result = run_relay(["dev-cert", "--out-dir", str(directory)], env=relay_env(), cwd=directory.parent)
    assert result.returncode == 0, result.stderr
    cert, key = directory / "dev-cert.pem", directory / "dev-key.pem"
    assert f"certificate: {cert}" in result.stdout
    assert f"private key: {key}" in result.stdout
    assert f"relay serve --tls-cert {cert} --tls-key {key}" in result.stdout
    return cert, key


def rsa_cert(directory: Path) -> tuple[Path, Path]:
    """An RSA certificate, so suites with RSA key exchange could be chosen if the policy allowed them."""
    directory.mkdir(mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_serve_args(data_dir: Path, cert: Path, key: Path) -> list[str]:
    return ["serve", "--port", "0", "--data-dir", str(data_dir), "--tls-cert", str(cert), "--tls-key", str(key)]


@dataclass
class TlsServer:
    relay: ServedRelay
    key_type: str
    cert: Path
    key: Path

    @property
    def port(self) -> int:
        return self.relay.port


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def tls_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsServer]:
    """Relay on a `relay dev-cert` certificate (ECDSA), and on an RSA one."""
    base = tmp_path_factory.mktemp(request.param)
    cert, key = dev_cert(base / "certs") if request.param == "ecdsa" else rsa_cert(base / "certs")
    with serving(tls_serve_args(base / "data", cert, key), env=relay_env(), cwd=base) as server:
        yield TlsServer(server, request.param, cert, key)


def client_context(setup: ClientSetup) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        setup(context)
    return context


def handshake(port: int, setup: ClientSetup) -> tuple[str | None, str]:
    """Connect with the client set up by ``setup``; the negotiated (version, cipher)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_context(setup).wrap_socket(raw) as tls:
            cipher = tls.cipher()
            assert cipher is not None
            return tls.version(), cipher[0]


@contextlib.contextmanager
def permissive_server(cert: Path, key: Path) -> Iterator[int]:
    """A plain TLS server that accepts one TLS 1.0+ handshake with any cipher: the control for a refusal."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:eNULL:@SECLEVEL=0")
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def accept_one() -> None:
        with contextlib.suppress(OSError):
            connection, _ = listener.accept()
            with connection:
                context.wrap_socket(connection, server_side=True).close()

    thread = threading.Thread(target=accept_one, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(timeout=10)
        listener.close()


def only_tls11(context: ssl.SSLContext) -> None:
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1


def tls12_with(cipher: str) -> ClientSetup:
    def setup(context: ssl.SSLContext) -> None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(f"{cipher}:@SECLEVEL=0")

    return setup


REFUSED_CLIENTS: dict[str, tuple[ClientSetup, set[str]]] = {
    # name: (client, the certificate key types with which a permissive server would accept it)
    "tls-1.1-only": (only_tls11, {"ecdsa", "rsa"}),
    "cbc-suites-only": (tls12_with("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"
                                   ":ECDHE-RSA-AES256-SHA384"), {"ecdsa", "rsa"}),
    "no-forward-secrecy": (tls12_with("AES128-GCM-SHA256:AES256-GCM-SHA384"), {"rsa"}),
    "null-cipher": (tls12_with("eNULL"), {"ecdsa", "rsa"}),
}


@pytest.mark.parametrize("client", sorted(REFUSED_CLIENTS))
def test_weak_clients_are_refused(tls_server: TlsServer, client: str) -> None:
    setup, accepted_by_permissive_server_with = REFUSED_CLIENTS[client]
    if tls_server.key_type in accepted_by_permissive_server_with:
        with permissive_server(tls_server.cert, tls_server.key) as control_port:
            handshake(control_port, setup)
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(tls_server.port, setup)


def test_default_tls12_client_gets_an_ecdhe_aead_suite(tls_server: TlsServer) -> None:
    version, cipher = handshake(tls_server.port, lambda context: setattr(
        context, "maximum_version", ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert cipher.startswith("ECDHE-")
    assert "GCM" in cipher or "CHACHA20-POLY1305" in cipher


def test_tls13_client_is_served_with_hsts(tls_server: TlsServer) -> None:
    context = client_context(lambda context: setattr(context, "minimum_version", ssl.TLSVersion.TLSv1_3))
    connection = http.client.HTTPSConnection("127.0.0.1", tls_server.port, context=context, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        assert response.status == 200
        assert response.read() == b'{"status":"ok"}'
        assert response.getheader("Strict-Transport-Security") == "max-age=31536000; includeSubDomains"
        assert connection.sock.version() == "TLSv1.3"  # type: ignore[union-attr]
    finally:
        connection.close()


def test_plain_http_gets_no_answer_on_the_tls_port(tls_server: TlsServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", tls_server.port, timeout=10)
    try:
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            connection.request("GET", "/healthz")
            connection.getresponse()
    finally:
        connection.close()


def test_dev_cert_names_localhost_and_loopback_and_hides_its_key(tmp_path: Path) -> None:
    cert_path, key_path = dev_cert(tmp_path / "certs")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert set(names.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")}
    assert certificate.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]


def test_dev_cert_is_trusted_for_localhost_by_a_verifying_client(tmp_path: Path) -> None:
    cert, key = dev_cert(tmp_path / "certs")
    with serving(tls_serve_args(tmp_path / "data", cert, key), env=relay_env(), cwd=tmp_path) as server:
        assert server.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        connection = http.client.HTTPSConnection("localhost", server.port, context=context, timeout=10)
        try:
            connection.request("GET", "/healthz")
            assert connection.getresponse().status == 200
        finally:
            connection.close()


def test_plain_http_serving_sends_no_hsts(tmp_path: Path) -> None:
    with serving(["serve", "--port", "0", "--data-dir", str(tmp_path / "data")], env=relay_env(),
                 cwd=tmp_path) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200
            assert response.getheader("Strict-Transport-Security") is None
        finally:
            connection.close()
