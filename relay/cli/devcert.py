"""`relay dev-cert`: a self-signed certificate for trying TLS on this machine (never for production)."""

from __future__ import annotations

import argparse
import ipaddress
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from relay.cli.options import settings_from
from relay.clock import SystemClock
from relay.errors import SettingsError

CERT_FILE = "dev-cert.pem"
KEY_FILE = "dev-key.pem"
VALID_DAYS = 90
DNS_NAMES = ("localhost",)
IP_ADDRESSES = ("127.0.0.1", "::1")


def register(commands: Any) -> None:
    parser: argparse.ArgumentParser = commands.add_parser(
        "dev-cert", help="write a self-signed TLS certificate for localhost (development only)"
    )
    parser.add_argument("--out-dir", metavar="DIR", help="where to write the files (default: the data directory)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out_dir) if args.out_dir else settings_from(args).data_dir
    cert_path, key_path = write_dev_certificate(out_dir, SystemClock().now())
    print(f"certificate: {cert_path}")
    print(f"private key: {key_path}")
    print(f"serve with:  relay serve --tls-cert {cert_path} --tls-key {key_path}")
    return 0


def write_dev_certificate(out_dir: Path, now: datetime) -> tuple[Path, Path]:
    """Write an ECDSA P-256 certificate for localhost, 127.0.0.1 and ::1, and its key (mode 0600)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as error:
        raise SettingsError(f"--out-dir: cannot create {out_dir}: {error.strerror}") from None
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = _self_signed(key, now)
    cert_path, key_path = (out_dir / CERT_FILE).resolve(), (out_dir / KEY_FILE).resolve()
    _write_private(key_path, key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _self_signed(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Relay development certificate")])
    names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in DNS_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in IP_ADDRESSES]
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
        ), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
