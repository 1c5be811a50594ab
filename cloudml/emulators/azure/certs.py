"""A self-signed TLS certificate for the emulator.

azure-core refuses to send a bearer token over plain http, and several azure-ai-ml operations do
not pass its `enforce_https=False` escape hatch, so the emulator speaks https. Clients trust it
through REQUESTS_CA_BUNDLE, pointing at a bundle of the public roots (certifi) plus this
certificate, so the same shell can still reach real services.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path


def make_certificate(folder: Path) -> tuple[Path, Path, Path]:
    """(cert, key, bundle) files in `folder`, valid for 127.0.0.1 and localhost."""
    import certifi
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudml Azure emulator")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path, bundle_path = folder / "emulator-cert.pem", folder / "emulator-key.pem", folder / "ca-bundle.pem"
    cert_path.write_bytes(cert_pem)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    bundle_path.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + cert_pem)
    return cert_path, key_path, bundle_path
