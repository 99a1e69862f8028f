"""Throwaway Redis servers for the transport tests: plain TCP or TLS, on a free port.

`RedisServer` runs this machine's `redis-server` (built with TLS: Debian's and Ubuntu's
are) in a temporary directory, nothing saved, and can be stopped and started again on
the same port. `Certificates` makes what TLS needs: a CA, a server certificate it signs
naming `localhost` only (so `127.0.0.1` is a host name the certificate does not match),
and a second CA that signed nothing the server presents.
"""

from __future__ import annotations

import contextlib
import datetime
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVER_NAME = "localhost"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool, names=()):
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        ).add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False
        ).add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that signed nothing the server presents
    server_cert: Path  # names SERVER_NAME only
    server_key: Path

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        paths = cls(
            ca=directory / "ca.pem",
            other_ca=directory / "other-ca.pem",
            server_cert=directory / "server.pem",
            server_key=directory / "server.key",
        )
        ca_key, other_key, server_key = _key(), _key(), _key()
        for path, name, key in (
            (paths.ca, "portal test CA", ca_key),
            (paths.other_ca, "some other CA", other_key),
        ):
            cert = _certificate(name, key, name, key, ca=True)
            path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = _certificate(
            "redis test server", server_key, "portal test CA", ca_key, ca=False, names=[SERVER_NAME]
        )
        paths.server_cert.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        _write_key(server_key, paths.server_key)
        return paths


class ServerUnavailable(RuntimeError):
    """redis-server is missing, or would not start (not built with TLS, say)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A private redis-server on 127.0.0.1: plain TCP, or TLS with `certificates`."""

    def __init__(self, directory: Path, certificates: Certificates | None = None):
        self.directory = directory
        self.certificates = certificates
        self.port = 0
        self.proc: subprocess.Popen | None = None
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerUnavailable("redis-server is not installed")
        self.binary = binary

    @property
    def tls(self) -> bool:
        return self.certificates is not None

    def url(self, host: str = "127.0.0.1", db: int = 0, **query: str) -> str:
        """`redis[s]://host:port/db?query`; TLS URLs trust the test CA unless the query
        says otherwise (`ssl_ca_certs=...`, or `ssl_ca_certs=None` for the system's)."""
        if self.tls:
            query = {"ssl_ca_certs": str(self.certificates.ca), **query}
        query = {name: value for name, value in query.items() if value is not None}
        scheme = "rediss" if self.tls else "redis"
        tail = "&".join(f"{name}={value}" for name, value in query.items())
        return f"{scheme}://{host}:{self.port}/{db}" + (f"?{tail}" if tail else "")

    def admin(self, db: int = 0) -> redis.Redis:
        """A redis-py client that trusts the test CA, for setting up and checking."""
        return redis.Redis.from_url(self.url(SERVER_NAME, db=db), socket_timeout=5)

    def _args(self) -> list[str]:
        args = [self.binary, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.directory), "--protected-mode", "no"]
        if self.certificates is None:
            return [*args, "--port", str(self.port)]
        c = self.certificates
        return [
            *args,
            *("--port", "0", "--tls-port", str(self.port)),
            *("--tls-cert-file", str(c.server_cert), "--tls-key-file", str(c.server_key)),
            *("--tls-ca-cert-file", str(c.ca), "--tls-auth-clients", "no"),
        ]

    def start(self) -> RedisServer:
        """Start on the port it had before (a restart), or on a free one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fresh = self.port == 0
        for _ in range(3 if fresh else 1):
            if fresh:
                self.port = _free_port()
            log = self.directory / "redis.log"
            with open(log, "ab") as out:
                self.proc = subprocess.Popen(
                    self._args(), cwd=self.directory, stdout=out, stderr=subprocess.STDOUT
                )
            if self._wait_ready():
                return self
            self.stop()
        raise ServerUnavailable(f"redis-server did not start:\n{log.read_text()[-2000:]}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            with contextlib.suppress(redis.RedisError), self.admin() as client:
                if client.ping():
                    return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Kill the server (no shutdown courtesy: clients see their connections drop)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()
