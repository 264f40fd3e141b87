"""The local stack's SMS gateway stand-in (CONTRACT.md: 127.0.0.1:8010, .local/sms/), modelled on Alibaba
Cloud's SendSms: `POST /v1/sms/send` with {PhoneNumbers, SignName, TemplateCode, TemplateParam, OutId} and the
access key as a bearer token answers {Code: "OK", Message, BizId, RequestId}. Like the provider, it does not
de-duplicate; each request it accepts is kept as one JSON file `<dir>/<time>-<OutId>.json` with at least
{to, text} (text: TemplateParam's `content`). Some time after, it POSTs a delivery receipt to the receipts URL
(SmsReport: out_id, success, err_code, ...), retrying until it is answered code 0, as the provider does.

For tests it can be told how to behave: `POST /admin/mode {"mode": ..., "delay_s": 2}` with mode
  ok (default) | fail (HTTP 503) | stall (never answers in time) | slow (answers after delay_s) |
  refuse (Code isv.MOBILE_NUMBER_ILLEGAL) | undeliverable (accepts, then reports the SMS undelivered)
Usage: sms_gateway.py [--port 8010] [--dir .local/sms] [--receipts-url URL]  (key and token from the
environment: SMS_ACCESS_KEY, SMS_RECEIPT_TOKEN)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

MODES = ("ok", "fail", "stall", "slow", "refuse", "undeliverable")


def build(folder: Path, receipts_url: str | None, access_key: str, receipt_token: str) -> FastAPI:
    app = FastAPI(title="SMS gateway stand-in")
    state: dict[str, Any] = {"mode": "ok", "delay_s": 2.0}
    folder.mkdir(parents=True, exist_ok=True)
    # Receipts wait here and go in batches (the provider's SmsReport is a list), over one client: a client
    # per receipt would build an SSL context each time, most of what the stand-in would cost.
    waiting: list[dict[str, Any]] = []
    flusher: list[asyncio.Task[None]] = []

    def report(out_id: str, delivered: bool) -> None:
        waiting.append(
            {
                "out_id": out_id,
                "success": delivered,
                "err_code": "DELIVERED" if delivered else "MK:0001",
                "err_msg": "用户接收成功" if delivered else "number out of service",
                "report_time": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
        )
        if not flusher or flusher[0].done():
            flusher[:] = [asyncio.create_task(flush())]

    async def flush() -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            failures = 0
            while waiting and failures < 30:  # the provider retries receipts that are not acknowledged
                await asyncio.sleep(0.3 if not failures else 2)
                batch = waiting[:500]
                try:
                    answer = await client.post(
                        receipts_url or "", json=batch, headers={"Authorization": f"Bearer {receipt_token}"}
                    )
                    acknowledged = answer.status_code == 200 and answer.json().get("code") == 0
                except (httpx.HTTPError, ValueError):
                    acknowledged = False
                if acknowledged:
                    del waiting[: len(batch)]
                    failures = 0
                else:
                    failures += 1

    @app.post("/v1/sms/send")
    async def send(request: Request) -> JSONResponse:
        if request.headers.get("authorization") != f"Bearer {access_key}":
            raise HTTPException(401, "InvalidAccessKeyId")
        mode = state["mode"]
        if mode == "fail":
            return JSONResponse({"Code": "isp.SYSTEM_ERROR", "Message": "service unavailable"}, status_code=503)
        if mode == "stall":
            await asyncio.sleep(3600)
        if mode == "slow":
            await asyncio.sleep(float(state["delay_s"]))
        body = await request.json()
        phone, out_id = str(body.get("PhoneNumbers", "")), str(body.get("OutId", ""))
        if mode == "refuse" or not phone:
            return JSONResponse({"Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "invalid number"})
        params = json.loads(body.get("TemplateParam") or "{}")
        biz_id = uuid.uuid4().hex
        kept = {
            "to": phone,
            "text": params.get("content", ""),
            "sign_name": body.get("SignName"),
            "template_code": body.get("TemplateCode"),
            "template_param": params,
            "out_id": out_id,
            "biz_id": biz_id,
            "received_at": time.time(),
        }
        name = "".join(ch for ch in out_id if ch.isalnum())[:64] or "no-out-id"
        # Written whole, then renamed into place: a reader never sees half a file.
        path = folder / f"{time.time_ns()}-{name}.json"
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(kept, ensure_ascii=False), encoding="utf-8")
        partial.rename(path)
        if receipts_url:
            report(out_id, mode != "undeliverable")
        return JSONResponse({"Code": "OK", "Message": "OK", "BizId": biz_id, "RequestId": uuid.uuid4().hex})

    @app.post("/admin/mode")
    async def set_mode(request: Request) -> dict[str, Any]:
        body = await request.json()
        if body.get("mode") not in MODES:
            raise HTTPException(422, f"mode is one of {MODES}")
        state.update(mode=body["mode"], delay_s=float(body.get("delay_s", state["delay_s"])))
        return state

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "mode": state["mode"]}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    parser.add_argument("--dir", type=Path, default=Path(".local/sms"))
    parser.add_argument("--receipts-url", default="http://127.0.0.1:8004/v1/sms/receipts")
    args = parser.parse_args()
    key = os.environ.get("SMS_ACCESS_KEY", "local-dev-only")
    token = os.environ.get("SMS_RECEIPT_TOKEN", "local-dev-only")
    app = build(args.dir, args.receipts_url or None, key, token)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
