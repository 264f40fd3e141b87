"""The SMS channel against a bare HTTP/1.1 gateway on the loopback: what a send puts on the wire (the JSON,
the bearer token), that it keeps its connection between sends, and how each kind of answer or failure is told
apart: permanent (refused) or transient (5xx, 429, no JSON, a throttling code, the gateway down or slow)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import orjson
import pytest

from xinfang_notify.channels import SendFailed, Sms

KEY = "sms-test-key"
REASONS = {200: "OK", 302: "Found", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests", 503: "x"}


@dataclass
class Gateway:
    """Answers every request with `status`, `body` and `content_type`; `stall` never answers; `drop` closes the
    connection instead of answering. Keeps what it was sent and counts the connections."""

    status: int = 200
    body: bytes = b'{"Code":"OK","Message":"OK","BizId":"biz-1","RequestId":"r"}'
    content_type: str = "application/json"
    extra_headers: str = ""
    stall: bool = False
    drop: bool = False
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append((line, headers, body))
                if self.stall:
                    await asyncio.sleep(3600)
                if self.drop:
                    return
                writer.write(
                    f"HTTP/1.1 {self.status} {REASONS.get(self.status, 'X')}\r\nContent-Type: {self.content_type}\r\n"
                    f"Content-Length: {len(self.body)}\r\n{self.extra_headers}\r\n".encode("latin-1")
                    + self.body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def gateway_and_sms(timeout_s: float = 5.0) -> AsyncIterator[tuple[Gateway, Sms]]:
    gateway = Gateway()
    server = await asyncio.start_server(gateway.serve, "127.0.0.1", 0)
    gateway.port = server.sockets[0].getsockname()[1]
    sms = Sms(f"http://127.0.0.1:{gateway.port}/", "四川信访", KEY, timeout_s)
    try:
        yield gateway, sms
    finally:
        await sms.close()
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1)


async def _failure(sms: Sms) -> SendFailed:
    with pytest.raises(SendFailed) as failed:
        await sms.send(uuid.uuid4(), "13800000000", "XF_RECEIPT_ZH", {"content": "x"})
    return failed.value


async def test_a_send_posts_the_request_with_the_bearer_token_and_returns_the_biz_id() -> None:
    async with gateway_and_sms() as (gateway, sms):
        key = uuid.uuid4()
        params = {"content": "您的信访事项已受理。\n查询码 ABCD-EFGH"}
        assert await sms.send(key, "13800000000", "XF_RECEIPT_ZH", params) == "biz-1"
        (line, headers, body) = gateway.requests[0]
        assert line == "POST /v1/sms/send HTTP/1.1"
        assert headers["authorization"] == f"Bearer {KEY}"
        assert headers["content-type"] == "application/json"
        # Compact UTF-8 JSON, as it always went (json.dumps with ensure_ascii=False and no spaces).
        assert body == orjson.dumps(sms.request(key, "13800000000", "XF_RECEIPT_ZH", params))
        assert orjson.loads(body) == {
            "PhoneNumbers": "13800000000",
            "SignName": "四川信访",
            "TemplateCode": "XF_RECEIPT_ZH",
            "TemplateParam": orjson.dumps(params).decode(),
            "OutId": key.hex,
        }


async def test_sends_keep_their_connection() -> None:
    async with gateway_and_sms() as (gateway, sms):
        for _ in range(5):
            await sms.send(uuid.uuid4(), "13800000000", "XF_RECEIPT_ZH", {"content": "x"})
        assert (len(gateway.requests), gateway.connections) == (5, 1)


async def test_the_answer_is_read_as_json_whatever_its_content_type() -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.content_type = "text/html; charset=utf-8"
        assert await sms.send(uuid.uuid4(), "13800000000", "XF_RECEIPT_ZH", {"content": "x"}) == "biz-1"


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_5xx_and_429_are_transient(status: int) -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.status = status
        failed = await _failure(sms)
        assert (failed.reason, failed.permanent) == (f"SMS gateway answered {status}", False)


@pytest.mark.parametrize(("status", "body"), [(200, b"<html>proxy</html>"), (200, b""), (404, b"not here")])
async def test_an_answer_without_json_is_transient(status: int, body: bytes) -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.status, gateway.body, gateway.content_type = status, body, "text/html"
        failed = await _failure(sms)
        assert (failed.reason, failed.permanent) == (f"SMS gateway answered {status} without JSON", False)


async def test_a_redirect_is_not_followed() -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.status, gateway.body, gateway.content_type = 302, b"", "text/plain"
        gateway.extra_headers = f"Location: http://127.0.0.1:{gateway.port}/elsewhere\r\n"
        failed = await _failure(sms)
        assert (failed.reason, failed.permanent) == ("SMS gateway answered 302 without JSON", False)
        assert len(gateway.requests) == 1


async def test_a_refusal_is_permanent_and_quotes_the_code_and_message() -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.body = orjson.dumps({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid number " + "x" * 300})
        failed = await _failure(sms)
        assert failed.permanent
        assert failed.reason == "SMS gateway refused it: isv.MOBILE_NUMBER_ILLEGAL invalid number " + "x" * 185


@pytest.mark.parametrize(
    "code", ["isv.BUSINESS_LIMIT_CONTROL", "isp.SYSTEM_ERROR", "isv.DAY_LIMIT_CONTROL", "Throttling"]
)
async def test_a_throttling_code_is_transient(code: str) -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.body = orjson.dumps({"Code": code, "Message": "later"})
        failed = await _failure(sms)
        assert (failed.reason, failed.permanent) == (f"SMS gateway refused it: {code} later", False)


async def test_a_4xx_with_json_but_no_code_is_refused_by_its_status() -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.status, gateway.body = 401, b'{"detail":"InvalidAccessKeyId"}'
        failed = await _failure(sms)
        assert (failed.reason, failed.permanent) == ("SMS gateway refused it: 401 ", True)


async def test_a_gateway_that_is_down_is_transient() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sms = Sms(f"http://127.0.0.1:{port}", "sign", KEY, 2.0)
    try:
        failed = await _failure(sms)
    finally:
        await sms.close()
    assert failed.reason.startswith("SMS gateway unreachable or slow: ")
    assert not failed.permanent


async def test_a_gateway_that_never_answers_is_transient_after_the_timeout() -> None:
    async with gateway_and_sms(timeout_s=0.3) as (gateway, sms):
        gateway.stall = True
        started = asyncio.get_running_loop().time()
        failed = await _failure(sms)
        assert asyncio.get_running_loop().time() - started < 2
        assert failed.reason.startswith("SMS gateway unreachable or slow: ")
        assert not failed.permanent


async def test_a_gateway_that_hangs_up_is_transient() -> None:
    async with gateway_and_sms() as (gateway, sms):
        gateway.drop = True
        failed = await _failure(sms)
        assert failed.reason.startswith("SMS gateway unreachable or slow: ")
        assert not failed.permanent
