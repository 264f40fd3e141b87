"""The console: the bureau's staff workbench and the petitioners' page, at http://127.0.0.1:8006.

A thin service: its own tables hold only staff accounts and sessions (accounts.py, sessions.py); everything it
shows or changes goes through the other services' public HTTP APIs, as the signed-in person (backends.py), and
they decide what that person may see and do (shared/staff.py). Pages are rendered on the server (Jinja2, escaped);
no script, style or font comes from another origin, and the CSP says so.
"""

# No `from __future__ import annotations`: FastAPI evaluates these signatures, which name local dependencies.
import asyncio
import hashlib
import logging
import re
import secrets
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape

from xinfang_shared.contracts.labels import labels
from xinfang_shared.contracts.reference import UNITS, DeadlineType, Kind, Office, Rating, VisitPlace
from xinfang_shared.ratelimit import ClientAddresses, RateLimit
from xinfang_shared.service import Late, Service
from xinfang_shared.staff import Role
from xinfang_shared.tracking import normalise

from . import accounts, sessions, views
from .backends import Backends, staff_headers
from .i18n import LANG_COOKIE, WORDS, language
from .settings import ConsoleSettings

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
MIGRATIONS = HERE / "migrations"
# Reception's content may be 20,000 characters, each up to 9 bytes once URL-encoded (a Chinese one).
MAX_FORM_BYTES = 256 * 1024
STAGES = ("due-soon", "overdue", "escalated")
# What the dashboard relays of stats, and nothing else (the path arrives decoded: `..`, `?` or `%` never match).
DASHBOARD_PATHS = re.compile(
    r"(v1/stats/(summary|timeseries|units|alerts|hot-terms)|static/([A-Za-z0-9_-]+/)*[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+)?"
)
# What the dashboard's relayed answers keep of stats' headers: their type, and the page's own CSP (its script).
RELAYED_HEADERS = {"content-type", "content-security-policy", "cache-control", "retry-after"}
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
                headers = message.get("headers", [])
                # A page that brings its own policy keeps it (the relayed dashboard runs its script); others get ours.
                own_policy = any(name.lower() == b"content-security-policy" for name, _ in headers)
                added = [h for h in SECURITY_HEADERS if not (own_policy and h[0] == b"content-security-policy")]
                message["headers"] = [*headers, *added]
            await send(message)

        await app(scope, receive, send_secured if scope["type"] == "http" else send)

    return with_headers


def create_service(settings: ConsoleSettings, *, transports: dict[str, Any] | None = None) -> Service:
    service = Service(settings, migrations=MIGRATIONS, title="xinfang console", messaging=False)
    late: Late[State] = Late("console")
    pages = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    units = list(UNITS)
    public = RateLimit(
        rate_per_s=settings.public_rate_limit_per_minute / 60,
        burst=settings.public_rate_limit_burst,
        trusted_proxies=settings.trusted_proxies,
    )
    # Who a request comes from, behind the ingress too: sign-in limits per address, and the petitioner's address
    # passed on to intake.
    clients = ClientAddresses(settings.trusted_proxies)

    @service.on_start
    async def open_state(svc: Service) -> None:
        assert settings.console_api_key is not None  # the settings require it
        backends = Backends(
            console_key=settings.console_api_key.get_secret_value(),
            routing=settings.routing_url,
            supervision=settings.supervision_url,
            intake=settings.intake_url,
            notify=settings.notify_url,
            stats=settings.stats_url,
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
        body = pages.get_template(template).render(
            lang=lang,
            t=WORDS[lang],
            n=lambda table, code: views.name(lang, table, code),
            L=labels(lang),
            left=lambda iso: views.time_left(lang, iso),
            when=views.beijing,
            city_of=views.city_of,
            **values,
        )
        response = HTMLResponse(body, status_code=status_code)
        if request.query_params.get("lang") in ("en", "zh-CN"):
            response.set_cookie(LANG_COOKIE, lang, samesite="strict", httponly=True, max_age=365 * 86400)
        return response

    class FormTooLarge(Exception):
        pass

    @api.exception_handler(FormTooLarge)
    async def too_large(request: Request, _: Exception) -> Response:
        return said(request, status.HTTP_413_CONTENT_TOO_LARGE, "too_large")

    async def form(request: Request) -> dict[str, str]:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise FormTooLarge
        # Reception's form has 27 fields; more than 40 is no form of ours (parse_qs refuses it: an empty form).
        try:
            fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=40)
        except ValueError:
            return {}
        return {k: v[0] for k, v in fields.items()}

    async def signed_in(request: Request) -> sessions.Session | None:
        state = late()
        token = sessions.unsign(request.cookies.get(sessions.COOKIE), state.secret)
        async with state.service.pool.acquire() as conn:
            return await sessions.current(conn, token, settings.session_idle_s)

    Person = Annotated[sessions.Session | None, Depends(signed_in)]

    def form_page(request: Request, template: str, status_code: int, **values: Any) -> HTMLResponse:
        """A page with a form sent before any session (sign-in, rating): its CSRF token, and the same token signed
        in a cookie that a page of another site cannot read (double submit)."""
        token = secrets.token_urlsafe(24)
        response = render(request, template, status_code, csrf=token, **values)
        response.set_cookie(
            sessions.PRE_COOKIE,
            sessions.sign(token, late().secret),
            httponly=True,
            samesite="strict",
            secure=settings.cookies_secure,
            max_age=3600,
        )
        return response

    def form_token_ok(request: Request, sent: dict[str, str]) -> bool:
        expected = sessions.unsign(request.cookies.get(sessions.PRE_COOKIE), late().secret)
        return expected is not None and secrets.compare_digest(sent.get("csrf", "").encode(), expected.encode())

    def signin_page(request: Request, status_code: int = 200, message: str | None = None) -> HTMLResponse:
        if message is None and request.cookies.get(sessions.COOKIE):  # a session it had has ended: say so
            message = WORDS[language(request)]["expired"]
        return form_page(request, "signin.html", status_code, message=message, person=None)

    def said(request: Request, status_code: int, words: str) -> HTMLResponse:
        """A refusal the console itself makes, as a page in the person's language (never a bare text)."""
        return render(request, "refused.html", status_code, person=None, message=WORDS[language(request)][words])

    def stale(request: Request) -> HTMLResponse:
        return said(request, status.HTTP_403_FORBIDDEN, "stale")

    def signed_page(
        request: Request, session: sessions.Session, template: str, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        """A page for the signed-in person: their name in the header, their session's CSRF token in its forms."""
        return render(request, template, status_code, person=session.account, csrf=session.csrf, **values)

    def changes_allowed(session: sessions.Session, sent: dict[str, str]) -> bool:
        return secrets.compare_digest(sent.get("csrf", "").encode(), session.csrf.encode())

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def workbench(request: Request, session: Person) -> Response:
        if session is None:
            return signin_page(request)
        state, person = late(), session.account
        offices = list(Office) if person.office is None else [person.office]
        answers = await asyncio.gather(
            *(state.backends.call("routing", "GET", f"/v1/queues/{office.value}", person=person) for office in offices)
        )
        # None: routing did not answer for that office (shown as such, never as an empty queue).
        queues = [(o.value, a.body if a.ok else None) for o, a in zip(offices, answers, strict=True)]
        return signed_page(
            request,
            session,
            "workbench.html",
            queues=queues,
            may_assign=person.office is not None and person.role in (Role.CLERK, Role.HEAD),
            units=units,
            message=request.query_params.get("done") and WORDS[language(request)]["done"],
        )

    @api.post("/signin", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        state, sent = late(), await form(request)
        if not form_token_ok(request, sent):
            return signin_page(request, status.HTTP_403_FORBIDDEN)
        username, password = sent.get("username", "")[:64], sent.get("password", "")[:256]
        address = clients.of(request)
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
            earlier = sessions.unsign(request.cookies.get(sessions.COOKIE), state.secret)
            if earlier is not None:  # signing in again ends the session this browser had
                await sessions.close(conn, earlier)
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
            return stale(request)
        async with late().service.pool.acquire() as conn:
            await sessions.close(conn, session.token)
        response = RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        response.delete_cookie(sessions.COOKIE)
        return response

    def refusal(request: Request, session: sessions.Session, answer: Any) -> HTMLResponse:
        """A service's refusal (or failure) as a page: what it said, with the status it answered."""
        words = WORDS[language(request)]
        message = words["refused"] if answer.status == 403 else words["failed"] + _detail(answer.body)
        answered = answer.status if answer.status >= 400 else 502
        return signed_page(request, session, "refused.html", answered, message=message)

    def back_to(sent: dict[str, str], matter_id: uuid.UUID) -> str:
        """Where a change returns: the matter's page when it was made there, else the queue (never elsewhere)."""
        return f"/matters/{matter_id}?done=1" if sent.get("from") == "matter" else "/?done=1"

    @api.post("/matters/{matter_id}/assign", include_in_schema=False)
    async def assign(request: Request, matter_id: uuid.UUID, session: Person) -> Response:
        """Assign a waiting matter to a unit, or (its head) move a transferred one: routing decides who may."""
        if session is None:
            return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        sent = await form(request)
        if not changes_allowed(session, sent):
            return stale(request)
        answer = await late().backends.call(
            "routing",
            "POST",
            f"/v1/matters/{matter_id}/reassign",
            person=session.account,
            json={"unit": sent.get("unit", ""), "reason": sent.get("reason", "")},
        )
        if answer.ok:
            return RedirectResponse(back_to(sent, matter_id), status.HTTP_303_SEE_OTHER)
        return refusal(request, session, answer)

    @api.post("/matters/{matter_id}/deadlines/{deadline}/{action}", include_in_schema=False)
    async def deadline_action(
        request: Request, matter_id: uuid.UUID, deadline: DeadlineType, action: str, session: Person
    ) -> Response:
        """Pause or resume a hearing, or extend a deadline: supervision decides who may and what the rules allow."""
        if session is None:
            return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        if action not in ("pause", "resume", "extend"):
            return said(request, status.HTTP_404_NOT_FOUND, "no_action")
        sent = await form(request)
        if not changes_allowed(session, sent):
            return stale(request)
        body: dict[str, Any] = {"reason": sent.get("reason", "")}
        if action == "extend":
            days = sent.get("days", "")
            # 0 for anything not a small number: supervision refuses it and names the field.
            body["days"] = int(days) if days.isascii() and days.isdigit() and len(days) <= 3 else 0
        answer = await late().backends.call(
            "supervision",
            "POST",
            f"/v1/matters/{matter_id}/deadlines/{deadline.value}/{action}",
            person=session.account,
            json=body,
        )
        if answer.ok:
            return RedirectResponse(f"/matters/{matter_id}?done=1", status.HTTP_303_SEE_OTHER)
        return refusal(request, session, answer)

    @api.get("/matters/{matter_id}", response_class=HTMLResponse, include_in_schema=False)
    async def matter(request: Request, matter_id: uuid.UUID, session: Person) -> Response:
        """The matter (routing decides whether this person may read it, and masks what they may not see), its
        deadlines (supervision) and the notices sent about it (notify)."""
        if session is None:
            return signin_page(request)
        backends, person = late().backends, session.account
        answer = await backends.call("routing", "GET", f"/v1/matters/{matter_id}", person=person)
        if not answer.ok:
            return refusal(request, session, answer)
        found, notices = await asyncio.gather(
            backends.call("supervision", "GET", f"/v1/matters/{matter_id}/deadlines", person=person),
            backends.call("notify", "GET", "/v1/notifications", person=person, params={"matter_id": str(matter_id)}),
        )
        deadlines = found.body.get("deadlines", []) if found.ok and isinstance(found.body, dict) else []
        return signed_page(
            request,
            session,
            "matter.html",
            matter=answer.body,
            deadlines=deadlines,
            deadlines_unavailable=not found.ok and found.status != 404,
            notices=notices.body if notices.ok and isinstance(notices.body, list) else [],
            notices_unavailable=not notices.ok,
            actions=views.matter_actions(person, answer.body, deadlines),
            units=units,
            message=request.query_params.get("done") and WORDS[language(request)]["done"],
        )

    @api.get("/deadlines", response_class=HTMLResponse, include_in_schema=False)
    async def deadlines_page(
        request: Request, session: Person, stage: str = "overdue", office: str = "", unit: str = ""
    ) -> Response:
        """Deadlines due soon, overdue or escalated, by office and unit: a person of an office sees their own
        office's (supervision decides), a leader any."""
        if session is None:
            return signin_page(request)
        person = session.account
        stage = stage if stage in STAGES else "overdue"
        params = {"stage": stage, "limit": "500"}
        if person.office is not None:
            params["office"] = person.office.value
        elif office in {o.value for o in Office}:
            params["office"] = office
        if unit in UNITS:
            params["unit"] = unit
        answer = await late().backends.call("supervision", "GET", "/v1/deadlines", person=person, params=params)
        if not answer.ok:
            return refusal(request, session, answer)
        return signed_page(
            request,
            session,
            "deadlines.html",
            rows=answer.body,
            stage=stage,
            stages=STAGES,
            office=params.get("office", ""),
            offices=[o.value for o in Office],
            unit=params.get("unit", ""),
            units=units,
        )

    @api.get("/dashboard", include_in_schema=False)
    async def dashboard_root() -> Response:
        return RedirectResponse("/dashboard/", status.HTTP_307_TEMPORARY_REDIRECT)

    @api.get("/dashboard/{path:path}", include_in_schema=False)
    async def dashboard(request: Request, path: str, session: Person) -> Response:
        """The stats dashboard, with the person's session instead of a machine key: its page and files as stats
        serves them, and its figures asked of stats as this person (the console's key and who). The page's CSP is
        stats' own (it runs a script from this origin); nothing here is a change, so GET only."""
        if session is None:
            if path.startswith("v1/"):
                return Response(status_code=status.HTTP_401_UNAUTHORIZED)
            return signin_page(request)
        if not DASHBOARD_PATHS.fullmatch(path):
            return Response(status_code=status.HTTP_404_NOT_FOUND)
        person = session.account if path.startswith("v1/") else None
        upstream = await late().backends.relay(
            "stats", "/" + path, person=person, params=request.query_params, accept=request.headers.get("accept")
        )
        content = upstream.content
        if not path:  # the page: told it is served with a session, not a key
            content = content.replace(b"<head>", b'<head>\n  <meta name="xinfang-session" content="console">', 1)
        kept = {k: v for k, v in upstream.headers.items() if k.lower() in RELAYED_HEADERS}
        return Response(content, upstream.status_code, headers=kept)

    def may_receive(person: accounts.Account) -> bool:
        return person.office == Office.RECEPTION and person.role in (Role.CLERK, Role.HEAD)

    def reception_page(
        request: Request, session: sessions.Session, status_code: int = 200, **values: Any
    ) -> HTMLResponse:
        nonce = secrets.token_urlsafe(16)
        return signed_page(
            request,
            session,
            "reception.html",
            status_code,
            nonce=nonce,
            # When the form was opened, signed with its nonce: the browser carries it, and cannot change it.
            at=sessions.sign(f"{nonce}|{datetime.now(UTC).isoformat(timespec='seconds')}", late().secret),
            kinds=[k.value for k in Kind if k not in (Kind.REVIEW_REQUEST, Kind.RE_REVIEW_REQUEST)],
            places=[p.value for p in VisitPlace],
            **({"sent": {}, "errors": []} | values),
        )

    @api.get("/reception", response_class=HTMLResponse, include_in_schema=False)
    async def reception(request: Request, session: Person) -> Response:
        if session is None:
            return signin_page(request)
        if not may_receive(session.account):
            return said(request, status.HTTP_403_FORBIDDEN, "reception_only")
        return reception_page(request, session)

    @api.post("/reception", include_in_schema=False)
    async def register_visit(request: Request, session: Person) -> Response:
        """A walk-in visit, registered through intake as the visit channel's system; the visitor gets the code."""
        if session is None:
            return RedirectResponse("/", status.HTTP_303_SEE_OTHER)
        sent = await form(request)
        if not changes_allowed(session, sent):
            return stale(request)
        if not may_receive(session.account):
            return said(request, status.HTTP_403_FORBIDDEN, "reception_only")
        if settings.intake_channel_key is None:
            return said(request, status.HTTP_503_SERVICE_UNAVAILABLE, "reception_closed")
        answer = await late().backends.call(
            "intake",
            "POST",
            "/v1/submissions",
            person=None,
            json=visit_submission(sent, session.token, opened_at(sent)),
            # The console's channel key (system settings.console_system at intake), with who registers it: intake
            # believes X-Staff-* from that key alone, and records the person as the matter's received_by.
            headers={"Authorization": f"Bearer {settings.intake_channel_key.get_secret_value()}"}
            | staff_headers(session.account),
        )
        if answer.status in (200, 201, 202) and isinstance(answer.body, dict) and answer.body.get("tracking_code"):
            log.info("registered a visit", extra={"user": session.account.username})
            return signed_page(
                request,
                session,
                "registered.html",
                tracking_code=answer.body.get("tracking_code"),
            )
        errors = answer.body.get("errors", []) if isinstance(answer.body, dict) else []
        if not errors:
            errors = [{"field": "<submission>", "message": _detail(answer.body)}]
        # The form's own faults (422) and a conflict (409) as intake says; anything else is intake's, not theirs.
        return reception_page(
            request, session, answer.status if answer.status in (409, 422) else 502, sent=sent, errors=errors
        )

    def opened_at(sent: dict[str, str]) -> str:
        """When the reception form was opened, if its signed value says so with its own nonce; else now."""
        signed = sessions.unsign(sent.get("at"), late().secret)
        nonce, _, at = (signed or "").partition("|")
        if signed is None or nonce != sent.get("nonce"):
            return datetime.now(UTC).isoformat(timespec="seconds")
        return at

    @api.get("/track", response_class=HTMLResponse, include_in_schema=False, dependencies=[public.depends])
    async def track(request: Request, code: str | None = None) -> Response:
        if not code:
            return render(request, "track.html", person=None, code=None, found=None)
        code = code.strip()[:32]
        words = WORDS[language(request)]
        if normalise(code) is None:  # never a path of intake's but a code's
            return render(request, "track.html", 404, person=None, code=code, found=None, message=words["not_found"])
        answer = await late().backends.call(
            "intake", "GET", f"/v1/matters/{normalise(code)}", person=None, headers=passed_on(request)
        )
        if answer.status == 429:
            limited = render(request, "track.html", 429, person=None, code=code, found=None)
            limited.headers["Retry-After"] = answer.retry_after or "60"
            return limited
        if answer.status >= 500:
            return render(request, "track.html", 503, person=None, code=code, found=None, message=words["unavailable"])
        if not answer.ok:
            return render(request, "track.html", 404, person=None, code=code, found=None, message=words["not_found"])
        return track_page(request, code, answer.body)

    def track_page(
        request: Request, code: str, found: Any, status_code: int = 200, message: str | None = None
    ) -> HTMLResponse:
        return form_page(
            request,
            "track.html",
            status_code,
            person=None,
            code=code,
            found=found,
            message=message,
            ratings=[r.value for r in Rating],
        )

    @api.post("/track/rate", include_in_schema=False, dependencies=[public.depends])
    async def rate(request: Request) -> Response:
        """A petitioner rates the opinion, once (intake refuses a second rating, or one before an opinion)."""
        sent = await form(request)
        if not form_token_ok(request, sent):
            return stale(request)
        code = normalise(sent.get("code", "")[:32]) or ""
        words = WORDS[language(request)]
        if not code:
            return render(request, "track.html", 404, person=None, code=None, found=None, message=words["not_found"])
        answer = await late().backends.call(
            "intake",
            "POST",
            f"/v1/matters/{code}/rating",
            person=None,
            json={"rating": sent.get("rating", "")},
            headers=passed_on(request),
        )
        message = words["rated"] if answer.ok else words["failed"] + _detail(answer.body)
        looked = await late().backends.call(
            "intake", "GET", f"/v1/matters/{code}", person=None, headers=passed_on(request)
        )
        found = looked.body if looked.ok else None
        rated = track_page(request, code, found, answer.status if not answer.ok else 200, message)
        if answer.status == 429:
            rated.headers["Retry-After"] = answer.retry_after or "60"
        return rated

    def passed_on(request: Request) -> dict[str, str]:
        """The petitioner's own address, for intake's public limits (believed when intake trusts the console)."""
        return {"X-Forwarded-For": clients.address_of(request)}

    return service


def visit_submission(sent: dict[str, str], session_token: str, submitted_at: str) -> dict[str, Any]:
    """The reception form as a submission on the visit channel. Its external id comes from the form's nonce and
    the session: the same form sent twice registers once, and no other session can name it."""
    digest = hashlib.sha256(f"{session_token}:{sent.get('nonce', '')}".encode()).hexdigest()[:32]
    representatives = [
        {"name": sent[f"rep{i}_name"], "id_number": sent.get(f"rep{i}_id", ""), "phone": sent.get(f"rep{i}_phone", "")}
        for i in range(1, 6)
        if sent.get(f"rep{i}_name")
    ]
    try:
        headcount = int(sent.get("headcount") or 1)
    except ValueError:
        headcount = 0  # refused by intake, which names the field
    submission: dict[str, Any] = {
        "external_id": f"console-{digest}",
        "channel": "visit",
        # When the form was opened: the same form sent again is the same submission (intake registers it once).
        "submitted_at": submitted_at,
        "kind": sent.get("kind", "complaint"),
        "petitioner": {
            "name": sent.get("name", ""),
            "id_number": sent.get("id_number", ""),
            "phone": sent.get("phone", ""),
        },
        "headcount": headcount,
        "representatives": representatives,
        "visit": {"place": sent.get("place", "chengdu")},
        "title": sent.get("title", ""),
        "content": sent.get("content", ""),
    }
    if sent.get("region_code"):
        submission["location"] = {"region_code": sent["region_code"]}
    return submission


def _detail(body: Any) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        return detail if isinstance(detail, str) else "—"
    return "—"


def create_app() -> FastAPI:
    """What uvicorn serves (`factory=True`): nothing is built at import time."""
    return create_service(ConsoleSettings()).api
