"""The console: the bureau's staff workbench and the petitioners' page, at http://127.0.0.1:8006.

A thin service: its own tables hold only staff accounts and sessions (accounts.py, sessions.py); everything it
shows or changes goes through the other services' public HTTP APIs, as the signed-in person (backends.py), and
they decide what that person may see and do (shared/staff.py). Pages are rendered on the server (Jinja2, escaped);
no script, style or font comes from another origin, and the CSP says so.
"""

# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.
import logging
import secrets
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from xinfang_shared.contracts.reference import CITIES, UNITS, Office
from xinfang_shared.ratelimit import RateLimit
from xinfang_shared.service import Late, Service

from . import accounts, sessions
from .backends import Backends
from .i18n import LANG_COOKIE, WORDS, language
from .settings import ConsoleSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
MAX_FORM_BYTES = 16 * 1024
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none';"
        b" base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


class State:
    def __init__(self, service: Service, settings: ConsoleSettings, backends: Backends) -> None:
        self.service = service
        self.settings = settings
        self.backends = backends
        self.secret = settings.session_secret.get_secret_value()


def _secured(app: Any) -> Any:
    async def with_headers(scope: Any, receive: Any, send: Any) -> None:
        async def send_secured(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await app(scope, receive, send_secured if scope["type"] == "http" else send)

    return with_headers


def create_service(settings: ConsoleSettings, *, transports: dict[str, Any] | None = None) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang console", messaging=False)
    late: Late[State] = Late("console")
    pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    units = [(code, CITIES.get(code, code)) for code in UNITS]
    public = RateLimit(rate_per_s=settings.public_rate_limit_per_minute / 60, burst=settings.public_rate_limit_burst)

    @service.on_start
    async def open_state(svc: Service) -> None:
        assert settings.console_api_key is not None  # the settings require it
        backends = Backends(
            console_key=settings.console_api_key.get_secret_value(),
            routing=settings.routing_url,
            supervision=settings.supervision_url,
            intake=settings.intake_url,
            timeout_s=settings.backend_timeout_s,
            transports=transports,
        )
        late.state = State(svc, settings, backends)

    @service.on_stop
    async def close_state(_: Service) -> None:
        if late.state is not None:
            await late.state.backends.close()

    api: FastAPI = service.api
    api.add_middleware(_secured)
    api.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    def render(request: Request, template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        lang = language(request)
        body = pages.get_template(template).render(lang=lang, t=WORDS[lang], **values)
        response = HTMLResponse(body, status_code=status_code)
        if request.query_params.get("lang") in ("en", "zh-CN"):
            response.set_cookie(LANG_COOKIE, lang, samesite="strict", httponly=True, max_age=365 * 86400)
        return response

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), max_num_fields=20).items()}

    async def signed_in(request: Request) -> sessions.Session | None:
        state = late()
        token = sessions.unsign(request.cookies.get(sessions.COOKIE), state.secret)
        async with state.service.pool.acquire() as conn:
            return await sessions.current(conn, token, settings.session_idle_s)

    Person = Annotated[sessions.Session | None, Depends(signed_in)]

    def signin_page(request: Request, status_code: int = 200, message: str | None = None) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        response = render(request, "signin.html", status_code, csrf=token, message=message, person=None)
        response.set_cookie(
            sessions.PRE_COOKIE,
            sessions.sign(token, late().secret),
            httponly=True,
            samesite="strict",
            secure=settings.cookies_secure,
            max_age=3600,
        )
        return response

    def changes_allowed(session: sessions.Session, sent: dict[str, str]) -> bool:
        return secrets.compare_digest(sent.get("csrf", ""), session.csrf)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def workbench(request: Request, session: Person) -> Response:
        if session is None:
            return signin_page(request)
        state, person = late(), session.account
        offices = list(Office) if person.office is None else [person.office]
        queues = []
        for office in offices:
            answer = await state.backends.call("routing", "GET", f"/v1/queues/{office.value}", person=person)
            queues.append((office.value, answer.body if answer.ok else []))
        return render(
            request,
            "workbench.html",
            person=person,
            csrf=session.csrf,
            queues=queues,
            may_assign=person.office is not None,
            units=units,
            message=request.query_params.get("done") and WORDS[language(request)]["done"],
        )

    @api.post("/signin", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        state, sent = late(), await form(request)
        expected = sessions.unsign(request.cookies.get(sessions.PRE_COOKIE), state.secret)
        if expected is None or not secrets.compare_digest(sent.get("csrf", ""), expected):
            return signin_page(request, status.HTTP_403_FORBIDDEN)
        username, password = sent.get("username", "")[:64], sent.get("password", "")[:256]
        address = request.client.host if request.client else "unknown"
        words = WORDS[language(request)]
        async with state.service.pool.acquire() as conn:
            wait = await sessions.refused_for(
                conn,
                username,
                address,
                settings.signin_window_s,
                settings.signin_max_per_account,
                settings.signin_max_per_address,
            )
            if wait is not None:
                limited = signin_page(request, status.HTTP_429_TOO_MANY_REQUESTS, words["limited"])
                limited.headers["Retry-After"] = str(int(wait) + 1)
                return limited
            account = await accounts.verify(conn, username, password)
            if account is None:
                await sessions.note_failure(conn, username, address, settings.signin_window_s)
                log.info("a sign-in failed", extra={"address_kind": "ip"})
                return signin_page(request, status.HTTP_401_UNAUTHORIZED, words["wrong"])
            session = await sessions.open_session(conn, account, settings.session_max_s)
        log.info("signed in", extra={"user": account.username})
        response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        response.set_cookie(
            sessions.COOKIE,
            sessions.sign(session.token, state.secret),
            httponly=True,
            samesite="strict",
            secure=settings.cookies_secure,
            max_age=settings.session_max_s,
        )
        response.delete_cookie(sessions.PRE_COOKIE)
        return response

    @api.post("/signout", include_in_schema=False)
    async def sign_out(request: Request, session: Person) -> Response:
        if session is None:
            return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        if not changes_allowed(session, await form(request)):
            return Response("the form is stale: reload the page", status.HTTP_403_FORBIDDEN)
        async with late().service.pool.acquire() as conn:
            await sessions.close(conn, session.token)
        response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(sessions.COOKIE)
        return response

    @api.post("/matters/{matter_id}/assign", include_in_schema=False)
    async def assign(request: Request, matter_id: uuid.UUID, session: Person) -> Response:
        if session is None:
            return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        sent = await form(request)
        if not changes_allowed(session, sent):
            return Response("the form is stale: reload the page", status.HTTP_403_FORBIDDEN)
        answer = await late().backends.call(
            "routing",
            "POST",
            f"/v1/matters/{matter_id}/reassign",
            person=session.account,
            json={"unit": sent.get("unit", ""), "reason": sent.get("reason", "")},
        )
        if answer.ok:
            return RedirectResponse("/?done=1", status.HTTP_303_SEE_OTHER)
        words = WORDS[language(request)]
        why = words["refused"] if answer.status == 403 else words["failed"] + _detail(answer.body)
        return render(
            request,
            "workbench.html",
            answer.status if answer.status >= 400 else 502,
            person=session.account,
            csrf=session.csrf,
            queues=[],
            may_assign=False,
            units=units,
            message=why,
        )

    @api.get("/matters/{matter_id}", response_class=HTMLResponse, include_in_schema=False)
    async def matter(request: Request, matter_id: uuid.UUID, session: Person) -> Response:
        if session is None:
            return signin_page(request)
        answer = await late().backends.call("routing", "GET", f"/v1/matters/{matter_id}", person=session.account)
        if not answer.ok:
            words = WORDS[language(request)]
            message = words["refused"] if answer.status == 403 else words["failed"] + _detail(answer.body)
            return render(
                request,
                "workbench.html",
                answer.status,
                person=session.account,
                csrf=session.csrf,
                queues=[],
                may_assign=False,
                units=units,
                message=message,
            )
        return render(request, "matter.html", person=session.account, csrf=session.csrf, matter=answer.body)

    @api.get("/track", response_class=HTMLResponse, include_in_schema=False, dependencies=[public.depends])
    async def track(request: Request, code: str | None = None) -> Response:
        if not code:
            return render(request, "track.html", person=None, code=None, found=None)
        code = code.strip()[:32]
        answer = await late().backends.call("intake", "GET", f"/v1/matters/{code}", person=None)
        if answer.status == 429:
            limited = render(request, "track.html", 429, person=None, code=code, found=None)
            limited.headers["Retry-After"] = answer.retry_after or "60"
            return limited
        if not answer.ok:
            words = WORDS[language(request)]
            return render(request, "track.html", 404, person=None, code=code, found=None, message=words["not_found"])
        return render(request, "track.html", person=None, code=code, found=answer.body)

    return service


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        return detail if isinstance(detail, str) else "—"
    return "—"


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(ConsoleSettings()).api
