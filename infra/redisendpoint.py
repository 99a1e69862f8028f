"""Where a lean Redis client connects and how: `Endpoint` read from a redis:// or rediss://
URL by redis-py's own parser, the TLS context redis-py's SSLConnection would build from the
same options (`tls_context`), and the connection prelude (AUTH, CLIENT SETNAME, SELECT).
Shared by infra/respclient.py (pooled) and infra/respmux.py (multiplexed).
"""

from __future__ import annotations

import builtins
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import hiredis
import redis
from redis.connection import parse_url
from redis.exceptions import AuthenticationError, ConnectionError, ResponseError, TimeoutError

# redis-py options these clients do not mirror: with any of them set, infra/faststate.py
# leaves the scripts to redis-py.
REDIS_PY_ONLY_OPTIONS = (
    "ssl_validate_ocsp",
    "ssl_validate_ocsp_stapled",
    "ssl_ocsp_context",
    "ssl_ocsp_expected_cert",
)

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


def tls_context(options: Mapping[str, Any]) -> ssl.SSLContext:
    """The TLS context for a rediss:// URL's options (as `redis.connection.parse_url` reads
    them), built as redis-py's SSLConnection builds it (redis-py 5 to 8):

    - `ssl_cert_reqs`: `required` (the default), `optional` or `none` (no verification,
      and then no host name check either);
    - `ssl_ca_certs` (a PEM file), `ssl_ca_path`, `ssl_ca_data`: the CAs trusted; none
      given, the system's;
    - `ssl_check_hostname` (default true): the certificate must name the URL's host;
    - `ssl_certfile`, `ssl_keyfile`, `ssl_password`: a client certificate;
    - `ssl_min_version`, `ssl_ciphers`, `ssl_include_verify_flags`,
      `ssl_exclude_verify_flags`.

    The OCSP options (REDIS_PY_ONLY_OPTIONS) are refused with ValueError."""
    unsupported = [name for name in REDIS_PY_ONLY_OPTIONS if options.get(name)]
    if unsupported:
        raise ValueError(f"Not supported by infra/respclient.py: {', '.join(unsupported)}")
    cert_reqs = options.get("ssl_cert_reqs", "required")
    if cert_reqs is None:
        cert_reqs = ssl.CERT_NONE
    elif isinstance(cert_reqs, str):
        if cert_reqs not in _CERT_REQS:
            raise ValueError(f"Invalid SSL Certificate Requirements Flag: {cert_reqs}")
        cert_reqs = _CERT_REQS[cert_reqs]
    check_hostname = (
        options.get("ssl_check_hostname", True) if cert_reqs != ssl.CERT_NONE else False
    )

    context = ssl.create_default_context()
    context.check_hostname = bool(check_hostname)
    context.verify_mode = cert_reqs
    for flag in options.get("ssl_include_verify_flags") or ():
        context.verify_flags |= flag
    for flag in options.get("ssl_exclude_verify_flags") or ():
        context.verify_flags &= ~flag
    certfile, keyfile = options.get("ssl_certfile"), options.get("ssl_keyfile")
    if certfile or keyfile:
        context.load_cert_chain(
            certfile=certfile, keyfile=keyfile, password=options.get("ssl_password")
        )
    cas = {
        "cafile": options.get("ssl_ca_certs"),
        "capath": options.get("ssl_ca_path"),
        "cadata": options.get("ssl_ca_data"),
    }
    if any(value is not None for value in cas.values()):
        context.load_verify_locations(**cas)
    if options.get("ssl_min_version") is not None:
        context.minimum_version = options["ssl_min_version"]
    if options.get("ssl_ciphers"):
        context.set_ciphers(options["ssl_ciphers"])
    return context


class _ClosedBeforeReply(ConnectionError):
    """The connection was closed (or reset) before a byte of the reply came back."""


def _read_reply(sock: socket.socket, reader: hiredis.Reader, buf: bytearray):
    """One reply from `sock`; _ClosedBeforeReply when the peer is gone before any of it."""
    try:
        n = sock.recv_into(buf)
    except (ConnectionResetError, ssl.SSLEOFError) as exc:
        raise _ClosedBeforeReply(f"Redis closed the connection: {exc}") from exc
    if not n:
        raise _ClosedBeforeReply("Redis closed the connection.")
    while True:
        reader.feed(buf, 0, n)
        reply = reader.gets()
        if reply is not False:
            return reply
        n = sock.recv_into(buf)
        if not n:
            raise ConnectionError("Redis closed the connection.")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect: shared by this client and infra/respmux.py's.

    `tls` is the context every connection is wrapped in (rediss://), None for plain TCP."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    socket_timeout: float = 2.0
    connect_timeout: float = 2.0
    client_name: str | None = None
    tls: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Endpoint:
        """A redis:// or rediss:// URL read by redis-py's parser; `options` are defaults
        the URL's query overrides (as with `redis.Redis.from_url`)."""
        options = {**options, **parse_url(url)}
        return cls.from_options(options, options.pop("connection_class", redis.Connection))

    @classmethod
    def from_options(cls, options: Mapping[str, Any], connection_class: type) -> Endpoint:
        """From the options redis-py's pool passes its connections (`connection_kwargs`)
        and their class: redis.Connection (plain TCP) or redis.SSLConnection (TLS)."""
        if connection_class not in (redis.Connection, redis.SSLConnection):
            raise ValueError(f"Only TCP and TLS connections are served, not {connection_class}")
        return cls(
            host=options.get("host") or "localhost",
            port=int(options.get("port") or 6379),
            db=int(options.get("db") or 0),
            username=options.get("username"),
            password=options.get("password"),
            socket_timeout=options.get("socket_timeout") or 2.0,
            connect_timeout=options.get("socket_connect_timeout") or 2.0,
            client_name=options.get("client_name"),
            tls=tls_context(options) if connection_class is redis.SSLConnection else None,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> socket.socket:
        """A connected socket (TLS when `tls`), authenticated, named and on `db`, with
        `socket_timeout` set. Errors are redis-py's ConnectionError (AuthenticationError
        for a refused AUTH) or TimeoutError."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"Timeout connecting to Redis at {self.address}.") from exc
        except OSError as exc:
            raise ConnectionError(f"Error connecting to Redis at {self.address}: {exc}") from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:  # the handshake runs under connect_timeout
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(self.socket_timeout)
            self._prelude(sock)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise ConnectionError(
                    f"Error connecting to Redis at {self.address} over TLS: the server's "
                    f"certificate was refused ({exc.verify_message}); see ssl_ca_certs, "
                    f"ssl_check_hostname and ssl_cert_reqs in the URL"
                ) from exc
            if isinstance(exc, socket.timeout):
                raise TimeoutError(
                    f"Timeout setting up the Redis connection to {self.address}."
                ) from exc
            if isinstance(exc, OSError):
                over = " over TLS" if self.tls is not None else ""
                raise ConnectionError(
                    f"Error setting up the Redis connection to {self.address}{over}: {exc}"
                ) from exc
            raise
        return sock

    def _prelude(self, sock: socket.socket) -> None:
        """AUTH, CLIENT SETNAME and SELECT, as redis-py's connections send them."""
        commands = []
        if self.username or self.password:
            credentials = (
                (self.username, self.password or "") if self.username else (self.password,)
            )
            commands.append(("AUTH", *credentials))
        if self.client_name:
            commands.append(("CLIENT", "SETNAME", self.client_name))
        if self.db:
            commands.append(("SELECT", self.db))
        reader, buf = hiredis.Reader(replyError=ResponseError), bytearray(4096)
        for command in commands:
            sock.sendall(hiredis.pack_command(command))
            reply = _read_reply(sock, reader, buf)
            if isinstance(reply, ResponseError):
                refused = AuthenticationError if command[0] == "AUTH" else ConnectionError
                raise refused(f"Redis at {self.address} refused {command[0]}: {reply}")
