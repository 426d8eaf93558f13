"""A real SMTP server for tests: aiosmtpd on 127.0.0.1 and a free port, in a thread of
its own, collecting what it is sent.

    with SmtpServer() as server:                       # smtp://127.0.0.1:<port>
        app = make_test_app(..., SMTP_URL=server.url)
        ...
        [message] = server.wait_for_messages(1)        # email.message.EmailMessage

    certificates = make_certificates(tmp_path)          # a test CA and a server certificate
    SmtpServer(tls="starttls", certificates=certificates)  # url ends in ?starttls=true
    SmtpServer(tls="implicit", certificates=certificates)  # smtps://
    # ... and the app trusts the CA with SMTP_CA_FILE=str(certificates.ca_file)

    server.reply_code = 451       # refuse what comes next (at DATA; refuse_at="rcpt": RCPT)
    server.reply_code = None      # accept again
    SmtpServer(credentials=("user@x", "p@ss"))  # AUTH required; server.url carries them

Messages are parsed with the modern e-mail policy (`email.policy.default`), so headers
come back decoded and `get_body()` / `iter_parts()` work.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import ssl
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
REFUSALS = {4: "4.3.0 Try again later (test refusal)", 5: "5.7.1 Refused (test refusal)"}


@dataclass(frozen=True)
class Envelope:
    """What the SMTP conversation said, besides the message: MAIL FROM and RCPT TO."""

    mail_from: str
    rcpt_tos: tuple[str, ...]


class _Controller(Controller):
    """aiosmtpd's controller, listening on a free port (port 0) and telling which."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


class _Handler:
    """aiosmtpd's handler hooks: refuse as told, else keep the message."""

    def __init__(self, owner: SmtpServer):
        self.owner = owner

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        refusal = self.owner._refusal("rcpt")
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        refusal = self.owner._refusal("data")
        if refusal:
            return refusal
        self.owner._received(envelope)
        return "250 Message accepted for delivery"


class SmtpServer:
    """A running local SMTP server; `url` is what SCHOOLBELL_SMTP_URL should say."""

    def __init__(
        self,
        *,
        tls: str | None = None,  # None, "starttls" or "implicit"
        certificates: Certificates | None = None,
        credentials: tuple[str, str] | None = None,
    ):
        if tls is not None and certificates is None:
            raise ValueError("TLS needs certificates (make_certificates)")
        self.reply_code: int | None = None
        self.refuse_at = "data"  # or "rcpt"
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.logins: list[str] = []
        self._credentials = credentials
        self._changed = threading.Condition()
        kwargs: dict = {"server_hostname": "smtp.school.test"}  # no getfqdn() lookup
        if tls == "starttls":
            kwargs.update(tls_context=certificates.server_context(), require_starttls=True)
        elif tls == "implicit":
            kwargs.update(ssl_context=certificates.server_context())
        elif tls is not None:
            raise ValueError(f"unknown tls {tls!r}")
        if credentials:
            kwargs.update(
                authenticator=self._authenticate,
                auth_required=True,
                auth_require_tls=tls is not None,
            )
        self._controller = _Controller(_Handler(self), hostname=HOST, port=0, **kwargs)
        self._controller.start()
        self.port: int = self._controller.port
        scheme = "smtps" if tls == "implicit" else "smtp"
        userinfo = (
            f"{quote(credentials[0], safe='')}:{quote(credentials[1], safe='')}@"
            if credentials
            else ""
        )
        query = "?starttls=true" if tls == "starttls" else ""
        self.url = f"{scheme}://{userinfo}{HOST}:{self.port}{query}"

    def __enter__(self) -> SmtpServer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening (idempotent)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def wait_for_messages(self, n: int, timeout: float = 5) -> list[EmailMessage]:
        """Wait until at least `n` messages arrived; return them all (a copy)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} message(s) within {timeout}s, got {len(self.messages)}"
                    )
                self._changed.wait(left)
            return list(self.messages)

    def received(self) -> list[EmailMessage]:
        """The messages so far (a copy)."""
        with self._changed:
            return list(self.messages)

    # Called on the server's thread ----------------------------------------------------
    def _refusal(self, stage: str) -> str | None:
        code = self.reply_code
        if code is None or stage != self.refuse_at:
            return None
        return f"{code} {REFUSALS.get(code // 100, 'Refused (test refusal)')}"

    def _received(self, envelope) -> None:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(message)
            self.envelopes.append(Envelope(envelope.mail_from, tuple(envelope.rcpt_tos)))
            self._changed.notify_all()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword) or self._credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = (login, password) == self._credentials
        if ok:
            with self._changed:
                self.logins.append(login)
        return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Certificates:
    """A test certificate authority and a server certificate it signed, for 127.0.0.1
    and localhost, as PEM files."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: Path, name: str = "Schoolbell test CA") -> Certificates:
    """A fresh CA (so a test can also show that another CA's server is refused) and a
    server certificate signed by it, written to `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certificates = Certificates(
        directory / "ca.pem", directory / "server.pem", directory / "server-key.pem"
    )
    certificates.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    certificates.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certificates.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificates


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
