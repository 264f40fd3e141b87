"""E-mail in production goes encrypted: SMTP_URL is smtps:// (implicit TLS) or smtp+starttls://, and a server
that does not offer the STARTTLS asked for gets nothing rather than the message in clear."""

from __future__ import annotations

import socket
import ssl
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from xinfang_notify.channels import Email, SendFailed, SmtpServer
from xinfang_notify.settings import NotifySettings

REAL_SECRETS = {
    "operator_api_key": "k" * 32,
    "personal_data_key": "a" * 44,
    "personal_data_transport_key": "b" * 44,
    "sms_access_key": "s" * 32,
    "sms_receipt_token": "t" * 32,
    # Production reaches the brokers over TLS, as its own principal.
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "service-notify",
    "kafka_sasl_password": "p" * 32,
}
SENDER = "xinfang@xfj.sc.gov.example"


def _settings(environment: str, smtp_url: str) -> NotifySettings:
    return NotifySettings(_env_file=None, environment=environment, smtp_url=smtp_url, **REAL_SECRETS)  # type: ignore[call-arg]


def test_production_refuses_plain_smtp() -> None:
    with pytest.raises(ValidationError, match="SMTP_URL must be encrypted in production") as refused:
        _settings("production", "smtp://mailer:secret@mail.example:25")
    assert "secret" not in str(refused.value).split("[type=")[0], "the message never quotes the URL's password"


@pytest.mark.parametrize("url", ["smtps://mail.example", "smtp+starttls://user:pw@mail.example:587"])
def test_production_takes_implicit_tls_or_starttls(url: str) -> None:
    assert _settings("production", url).smtp_url == url


@pytest.mark.parametrize("environment", ["local", "test"])
def test_local_and_test_still_take_plain_smtp(environment: str) -> None:
    assert _settings(environment, "smtp://127.0.0.1:1025").smtp_url == "smtp://127.0.0.1:1025"


def test_a_scheme_that_is_none_of_the_three_is_refused_everywhere() -> None:
    with pytest.raises(ValidationError, match=r"smtp\+starttls://, not 'smtp\+tls'"):
        _settings("test", "smtp+tls://mail.example")


def test_the_starttls_form_is_parsed() -> None:
    server = SmtpServer.parse("smtp+starttls://mail%40xfj:p%3Ass@mail.example")
    assert server == SmtpServer("mail.example", 587, tls=False, starttls=True, username="mail@xfj", password="p:ss")
    assert server.encrypted and "p:ss" not in repr(server)
    assert SmtpServer.parse("smtps://mail.example").port == 465
    assert not SmtpServer.parse("smtp://mail.example").encrypted


# --- against a real SMTP server (aiosmtpd) ------------------------------------------------------------


class _Kept:
    def __init__(self) -> None:
        self.encrypted: list[bool] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.encrypted.append(session.ssl is not None)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    """A TLS context for 127.0.0.1 whose self-signed certificate this process trusts (SSL_CERT_FILE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextmanager
def _serving(kept: _Kept, **smtp: Any) -> Iterator[int]:
    port = _free_port()
    controller = Controller(kept, hostname="127.0.0.1", port=port, **smtp)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def plain_server() -> Iterator[tuple[_Kept, int]]:
    kept = _Kept()
    with _serving(kept) as port:
        yield kept, port


@pytest.fixture
def starttls_server(server_tls: ssl.SSLContext) -> Iterator[tuple[_Kept, int]]:
    kept = _Kept()
    with _serving(kept, tls_context=server_tls, require_starttls=True) as port:
        yield kept, port


async def _send(port: int) -> str:
    email = Email(f"smtp+starttls://127.0.0.1:{port}", SENDER, 5)
    try:
        return await email.send(uuid.uuid4(), "zhang@example.org", "主题", "正文")
    finally:
        await email.close()


async def test_starttls_upgrades_before_the_message(starttls_server: tuple[_Kept, int]) -> None:
    kept, port = starttls_server
    assert "OK" in await _send(port)
    assert kept.encrypted == [True]


async def test_a_server_without_starttls_gets_nothing(plain_server: tuple[_Kept, int]) -> None:
    kept, port = plain_server
    with pytest.raises(SendFailed, match="STARTTLS") as failed:
        await _send(port)
    assert not failed.value.permanent, "retried: the server may be mended"
    assert kept.encrypted == []
