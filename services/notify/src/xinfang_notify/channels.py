"""How notices leave: e-mail over SMTP (aiosmtplib) and SMS through an HTTP gateway modelled on Alibaba Cloud's
SendSms (PhoneNumbers, SignName, TemplateCode, TemplateParam, OutId). Each send carries the notice's own key
(Message-ID, OutId), so a resend after a crash is the same message to whoever de-duplicates.

A failure says whether it is permanent (a bad address, a 5xx from SMTP, a refused request): the notice fails at
once with the reason; or transient (a 4xx from SMTP, the gateway down or slow, a timeout): it is retried.
"""

from __future__ import annotations

import base64
import email.policy
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr
from typing import Any
from urllib.parse import unquote, urlsplit

import aiohttp
import aiosmtplib
import orjson

MESSAGE_ID_DOMAIN = "xinfang.sc.gov.example"
# Gateway answers that mean "not now" rather than "never" (SendSms error codes).
SMS_TRANSIENT_CODES = frozenset(
    {"isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "isv.DAY_LIMIT_CONTROL", "Throttling"}
)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    content: bytes


@dataclass
class SendFailed(Exception):
    reason: str
    permanent: bool

    def __str__(self) -> str:
        return self.reason


def message_id(key: uuid.UUID) -> str:
    return f"<{key}@{MESSAGE_ID_DOMAIN}>"


def encoded_words(text: str) -> str:
    """A header value as RFC 2047 base64 encoded words (whole characters in each), folded so that every line,
    "Subject: " included, stays within RFC 5322's 78 characters; plain ASCII without line breaks as it is."""
    if text.isascii() and "\r" not in text and "\n" not in text:
        return text
    words: list[bytes] = []
    chunk = b""
    for ch in text.replace("\r", " ").replace("\n", " "):
        b = ch.encode("utf-8")
        if len(chunk) + len(b) > 39:  # 39 bytes: 52 base64 characters, 64 with "=?utf-8?b?" and "?="
            words.append(chunk)
            chunk = b""
        chunk += b
    words.append(chunk)
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w).decode('ascii')}?=" for w in words)


SMTP_SCHEMES = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}  # and the port each defaults to


@dataclass(frozen=True)
class SmtpServer:
    """Where e-mail goes, from SMTP_URL: smtp:// (plain), smtps:// (implicit TLS) or smtp+starttls://
    (upgraded with STARTTLS before anything else is said), host, optional port, optional user:password@."""

    host: str
    port: int
    tls: bool
    starttls: bool
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def encrypted(self) -> bool:
        return self.tls or self.starttls

    @classmethod
    def parse(cls, url: str) -> SmtpServer:
        # The messages never quote the URL: it may hold the password.
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES:
            raise ValueError(f"SMTP_URL must start with smtp://, smtps:// or smtp+starttls://, not {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("SMTP_URL names no host")
        return cls(
            host=parts.hostname,
            port=parts.port or SMTP_SCHEMES[parts.scheme],
            tls=parts.scheme == "smtps",
            starttls=parts.scheme == "smtp+starttls",
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Email:
    """Sends over connections it keeps open between messages (one per sender at a time, at most `keep` idle):
    a connection per message would cost its TCP handshake, banner, EHLO and QUIT each time, which is most of
    what a message costs both ends. A connection is dropped after any failure, and a reused one the server
    closed meanwhile is replaced once, at once, before the message counts as failed."""

    def __init__(self, url: str, sender: str, timeout_s: float, keep: int = 8) -> None:
        self.server = SmtpServer.parse(url)
        self.sender = sender
        self.timeout_s = timeout_s
        self.keep = keep
        # EHLO names the sending domain: aiosmtplib would otherwise look up this host's FQDN (a blocking DNS
        # call) for every connection.
        self.helo = sender.rpartition("@")[2].strip("> ") or "localhost"
        self._idle: list[aiosmtplib.SMTP] = []
        name, self.envelope_from = parseaddr(sender)
        if not self.envelope_from or "\n" in sender or "\r" in sender:
            raise ValueError(f"SMTP_FROM must be an address or 'Name <address>', not {sender!r}")
        self.from_header = formataddr((name, self.envelope_from), charset="utf-8")

    def message(
        self, key: uuid.UUID, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> bytes:
        """UTF-8 text, base64; a non-ASCII subject as RFC 2047 encoded words. Written out directly: the
        email package's EmailMessage and its generator cost more than the rest of a send (py-spy, e2e bench).
        A non-ASCII address (SMTPUTF8), or attachments (the monthly report), take the email package's path."""
        if "\r" in to or "\n" in to:
            raise SendFailed("recipient address contains a line break", True)
        if not to.isascii() or attachments:
            return self._message_by_email_package(key, to, subject, body, attachments)
        head = (
            f"From: {self.from_header}\r\nTo: {to}\r\nSubject: {encoded_words(subject)}\r\n"
            f"Date: {formatdate(localtime=False)}\r\nMessage-ID: {message_id(key)}\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        )
        return head.encode("ascii") + base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")

    def _message_by_email_package(
        self, key: uuid.UUID, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> bytes:
        # SMTPUTF8 only where the address needs it: an ASCII message keeps RFC 2047 headers any server takes.
        policy = email.policy.SMTP if to.isascii() else email.policy.SMTPUTF8
        msg = EmailMessage(policy=policy)
        msg["From"] = self.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = message_id(key)
        msg.set_content(body, charset="utf-8")
        for a in attachments:
            main, _, sub = a.content_type.partition("/")
            msg.add_attachment(a.content, maintype=main, subtype=sub, filename=a.filename)
        return msg.as_bytes()

    async def _connect(self) -> aiosmtplib.SMTP:
        server = self.server
        smtp = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            use_tls=server.tls,
            # True: STARTTLS before logging in, or an error if the server does not offer it (never on in clear);
            # False: no opportunistic upgrade either, so plain is plain and implicit TLS is left alone.
            start_tls=server.starttls,
            username=server.username,
            password=server.password,
            timeout=self.timeout_s,
            local_hostname=self.helo,
        )
        try:
            await smtp.connect()
        except aiosmtplib.SMTPException as exc:
            if type(exc) is not aiosmtplib.SMTPException:
                raise
            # aiosmtplib's own refusal (no STARTTLS or AUTH on offer): its words say which, and name nobody.
            raise SendFailed(f"SMTP session not set up as SMTP_URL asks: {exc}", False) from None
        return smtp

    async def send(
        self, key: uuid.UUID, to: str, subject: str, body: str, attachments: Sequence[Attachment] = ()
    ) -> str:
        """The server's answer on acceptance; raises SendFailed."""
        msg = self.message(key, to, subject, body, attachments)
        options = [] if msg.isascii() else ["SMTPUTF8"]
        smtp: aiosmtplib.SMTP | None = None
        try:
            while self._idle and smtp is None:
                candidate = self._idle.pop()
                smtp = candidate if candidate.is_connected else None
            if smtp is not None:
                try:
                    _, answer = await smtp.sendmail(self.envelope_from, [to], msg, mail_options=options)
                except aiosmtplib.SMTPServerDisconnected:
                    smtp = None  # closed while idle: once more on a new connection
                else:
                    return self._kept(smtp, answer)
            smtp = await self._connect()
            _, answer = await smtp.sendmail(self.envelope_from, [to], msg, mail_options=options)
            return self._kept(smtp, answer)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0] if exc.recipients else None
            code = refused.code if refused else 550
            raise SendFailed(
                f"recipient refused: {code} {refused.message if refused else ''}".strip(), code >= 500
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise SendFailed(f"SMTP {exc.code}: {exc.message}", exc.code >= 500) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendFailed(f"SMTP server unreachable or slow: {type(exc).__name__}", False) from None
        finally:
            if smtp is not None and smtp not in self._idle:
                smtp.close()  # failed on it: its state is unknown

    def _kept(self, smtp: aiosmtplib.SMTP, answer: str) -> str:
        if len(self._idle) < self.keep:
            self._idle.append(smtp)
        else:
            smtp.close()
        return str(answer)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for smtp in idle:
            try:
                await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()


class Sms:
    """Posts over aiohttp's pool of kept-alive connections, made on the first send inside the running loop
    (aiohttp binds a session to its loop). Not httpx: its per-request machinery (httpcore's, and an import of
    sniffio attempted on every request) was most of what a send cost notify's CPU (py-spy, notify bench).
    Redirects are not followed and the answer is read as JSON whatever its Content-Type, as before."""

    def __init__(self, url: str, sign_name: str, access_key: str, timeout_s: float) -> None:
        self.url = url.rstrip("/")
        self.sign_name = sign_name
        self.access_key = access_key
        self.endpoint = f"{self.url}/v1/sms/send"
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout,
                headers={"Authorization": f"Bearer {self.access_key}", "Content-Type": "application/json"},
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def request(self, key: uuid.UUID, phone: str, template: str, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "PhoneNumbers": phone,
            "SignName": self.sign_name,
            "TemplateCode": template,
            "TemplateParam": orjson.dumps(params).decode(),
            # The provider does not de-duplicate (its docs say so): our key travels with the request and comes
            # back with the delivery receipt.
            "OutId": key.hex,
        }

    async def send(self, key: uuid.UUID, phone: str, template: str, params: dict[str, Any]) -> str:
        """The gateway's BizId; raises SendFailed."""
        # Compact UTF-8 JSON, byte for byte what json.dumps(ensure_ascii=False, separators=(",", ":")) gives.
        body = orjson.dumps(self.request(key, phone, template, params))
        try:
            async with self.client.post(self.endpoint, data=body, allow_redirects=False) as response:
                status, content = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendFailed(f"SMS gateway unreachable or slow: {type(exc).__name__}", False) from None
        if status >= 500 or status == 429:
            raise SendFailed(f"SMS gateway answered {status}", False)
        try:
            answer = json.loads(content)
        except ValueError:
            raise SendFailed(f"SMS gateway answered {status} without JSON", False) from None
        code = str(answer.get("Code", ""))
        if status >= 400 or code != "OK":
            message = str(answer.get("Message", ""))[:200]
            raise SendFailed(f"SMS gateway refused it: {code or status} {message}", code not in SMS_TRANSIENT_CODES)
        return str(answer.get("BizId", ""))
