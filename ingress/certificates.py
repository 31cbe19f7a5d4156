"""Self-signed ECDSA P-256 certificates that Chromium accepts through ``serverCertificateHashes``.

docs/media-and-webtransport.md §3.1: ECDSA P-256, X.509v3, total validity <= 14 days, hash = SHA-256 of
the whole DER certificate. Ours are valid for 13 days (backdated 1 minute) and reuse a stored certificate
while it still has more than a day to run, so a restarted ingress keeps the hash pages already know.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

VALIDITY = dt.timedelta(days=13)  # < 14 days, the serverCertificateHashes ceiling
BACKDATE = dt.timedelta(minutes=1)
RENEW_BEFORE = dt.timedelta(days=1)  # regenerate when less than this remains
MAX_VALIDITY = dt.timedelta(days=14)
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    cert_path: Path
    key_path: Path
    sha256: bytes  # over the DER certificate
    not_before: dt.datetime
    not_after: dt.datetime
    generated: bool  # False when an existing file was reused

    @property
    def sha256_hex(self) -> str:
        return self.sha256.hex()


def generate(now: dt.datetime, hosts: list[str] | None = None) -> tuple[bytes, bytes]:
    """Return (cert PEM, key PEM) for a fresh P-256 certificate valid 13 days from ``now - 1 min``."""
    hosts = hosts or ["localhost", "127.0.0.1", "::1"]
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wtpulsar ingress")])
    not_before = now - BACKDATE
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_before + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def describe(cert_path: Path, key_path: Path, generated: bool = False) -> CertificateInfo:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return CertificateInfo(
        cert_path=cert_path, key_path=key_path,
        sha256=hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc, generated=generated,
    )


def usable_for_hashes(info: CertificateInfo, now: dt.datetime) -> bool:
    """True when Chromium would accept it via serverCertificateHashes for at least RENEW_BEFORE more."""
    cert = x509.load_pem_x509_certificate(info.cert_path.read_bytes())
    key = cert.public_key()
    return (
        isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, ec.SECP256R1)
        and info.not_after - info.not_before <= MAX_VALIDITY
        and info.not_before <= now
        and info.not_after - now > RENEW_BEFORE
    )


def ensure(cert_dir: Path, now: dt.datetime | None = None) -> CertificateInfo:
    """Reuse ``cert_dir``'s certificate while it is valid, otherwise generate and store a new one."""
    now = now or dt.datetime.now(dt.UTC)
    cert_path, key_path = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    if cert_path.exists() and key_path.exists():
        try:
            info = describe(cert_path, key_path)
            if usable_for_hashes(info, now):
                return info
        except ValueError:
            pass  # unreadable file: replace it below
    cert_dir.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = generate(now)
    _write_private(key_path, key_pem)
    cert_path.write_bytes(cert_pem)
    return describe(cert_path, key_path, generated=True)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
