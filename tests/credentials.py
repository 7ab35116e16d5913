"""Keys, certificates and an OIDC provider made on the spot for the tests."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

AUDIENCE = "relay-writebacks"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """Writes a certificate for 127.0.0.1 and its key; returns their paths."""
    key = rsa_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "writeback.crt", folder / "writeback.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@dataclass
class Provider:
    """An OIDC provider: discovery document, JWKS, and tokens it signs."""

    issuer: str = ""
    key: rsa.RSAPrivateKey = field(default_factory=rsa_key)
    key_id: str = "key-1"
    key_requests: int = 0

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "sense-writebacks",
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        headers = {"kid": self.key_id}
        return jwt.encode(payload, self.key, algorithm="RS256", headers=headers)

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/keys"}
        )

    async def keys(self, request: web.Request) -> web.Response:
        self.key_requests += 1
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        jwk.update(kid=self.key_id, use="sig", alg="RS256")
        return web.json_response({"keys": [jwk]})


@contextlib.asynccontextmanager
async def serving_provider() -> AsyncIterator[Provider]:
    provider = Provider()
    app = web.Application()
    app.router.add_get("/.well-known/openid-configuration", provider.discovery)
    app.router.add_get("/keys", provider.keys)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    provider.issuer = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield provider
    finally:
        await runner.cleanup()
