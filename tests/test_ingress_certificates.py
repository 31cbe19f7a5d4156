from __future__ import annotations

import datetime as dt
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ingress import certificates


def test_generated_certificate_meets_server_certificate_hashes_rules(tmp_path) -> None:
    info = certificates.ensure(tmp_path)
    cert = x509.load_pem_x509_certificate(info.cert_path.read_bytes())
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    assert cert.version == x509.Version.v3
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=14)
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC) < cert.not_valid_after_utc
    assert info.sha256 == hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    assert len(info.sha256_hex) == 64
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert (info.key_path.stat().st_mode & 0o777) == 0o600
    assert info.generated


def test_reused_while_valid_renewed_near_expiry(tmp_path) -> None:
    now = dt.datetime.now(dt.UTC)
    first = certificates.ensure(tmp_path, now)
    again = certificates.ensure(tmp_path, now + dt.timedelta(days=5))
    assert not again.generated and again.sha256 == first.sha256
    late = certificates.ensure(tmp_path, now + dt.timedelta(days=12, hours=1))  # < 1 day left
    assert late.generated and late.sha256 != first.sha256


def test_unusable_stored_certificate_is_replaced(tmp_path) -> None:
    (tmp_path / certificates.CERT_FILE).write_text("not a certificate")
    (tmp_path / certificates.KEY_FILE).write_text("nor a key")
    info = certificates.ensure(tmp_path)
    assert info.generated and certificates.usable_for_hashes(info, dt.datetime.now(dt.UTC))
