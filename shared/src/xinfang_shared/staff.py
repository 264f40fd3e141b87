"""Who acts on a service's staff routes: an operator (the operator key), or a person of the bureau's staff whom
the console names. What each may do is decided here, on the server.

Only the console names a person: it calls with its own credential (`CONSOLE_API_KEY`) and says who in
`X-Staff-User`, `X-Staff-Office` and `X-Staff-Role`, having signed that person in. The services believe those
headers from the console's credential alone: with any other credential (the operator's, a unit's, none) a
request that carries one is refused with 403, so no caller can act as a person it is not. An operator names
itself in `X-Operator`, recorded as `operator:<name>` (a claim of whoever holds the operator key); a person is
recorded as `staff:<user>`.

The staff's rights (DOMAIN.md, "Staff"): a clerk works the matters of their office; a head of office the same,
plus reassigning out of it; a leader reads everything and changes nothing; personal data only to those whose
office handles the matter. Operators keep every right (they run the system).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated

from fastapi import Header, HTTPException, Request, status

from .contracts.reference import Office
from .contracts.values import ONE_LINE

STAFF_HEADERS = ("x-staff-user", "x-staff-office", "x-staff-role")
USER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class Role(StrEnum):
    CLERK = "clerk"
    HEAD = "head"
    LEADER = "leader"


@dataclass(frozen=True)
class Actor:
    name: str
    role: Role | None = None  # None: an operator
    office: Office | None = None  # a leader's is None: the bureau's

    @property
    def is_operator(self) -> bool:
        return self.role is None

    @property
    def recorded(self) -> str:
        """How history names who did it."""
        return f"operator:{self.name}" if self.is_operator else f"staff:{self.name}"

    def may_read(self, office: Office | str | None) -> bool:
        """The matters of an office: its own staff, leaders and operators."""
        return self.is_operator or self.role == Role.LEADER or (office is not None and self.office == Office(office))

    def may_change(self, office: Office | str | None) -> bool:
        """Work a matter of an office (assign, pause or resume a hearing): its clerks and head, and operators."""
        if self.is_operator:
            return True
        return self.role in (Role.CLERK, Role.HEAD) and office is not None and self.office == Office(office)

    def may_send_out(self, office: Office | str | None) -> bool:
        """Reassign a matter out of an office, or extend: its head, and operators."""
        return self.is_operator or (self.role == Role.HEAD and office is not None and self.office == Office(office))

    def may_see_personal_data(self, office: Office | str | None) -> bool:
        """Personal data of a matter: those whose office handles it (and operators); never a leader."""
        return self.is_operator or (
            self.role in (Role.CLERK, Role.HEAD) and office is not None and self.office == Office(office)
        )

    def require(self, allowed: bool, what: str) -> None:
        if not allowed:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"{self.recorded} may not {what}")


def _bearer(request: Request) -> str | None:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _equal(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and secrets.compare_digest(given.encode(), expected.encode())


def actor_dependency(operator_key: str, console_key: str | None) -> Callable[..., Actor]:
    """A FastAPI dependency giving the Actor of a request (see the module), or 401 / 403 / 422."""

    def actor(
        request: Request,
        x_operator: Annotated[
            str | None,
            Header(min_length=1, max_length=100, pattern=ONE_LINE, description="An operator's name (audit)"),
        ] = None,
    ) -> Actor:
        token = _bearer(request)
        if _equal(token, console_key):
            return _person(request)
        if not _equal(token, operator_key):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid API key is required: Authorization: Bearer <key>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if names_a_person(request.headers):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only the console names a person (X-Staff-*)")
        return Actor(x_operator or "unnamed")

    return actor


def _person(request: Request) -> Actor:
    return person_named(request.headers)


def names_a_person(headers: Mapping[str, str]) -> bool:
    """The request carries one of X-Staff-* (lower-case names, as ASGI and Starlette give them)."""
    return any(h in headers for h in STAFF_HEADERS)


def person_named(headers: Mapping[str, str]) -> Actor:
    """The person X-Staff-User / -Office / -Role name (`headers`: lower-case names), or 422 (HTTPException)
    when they name nobody valid. Believe it only from the console's own credential (see the module)."""
    user = headers.get("x-staff-user", "")
    role = headers.get("x-staff-role", "")
    office = headers.get("x-staff-office", "")
    if not USER.fullmatch(user):  # match() would take "bob\n": $ allows a final newline
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Staff-User: a user name is required")
    if role not in set(Role):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Staff-Role: clerk, head or leader")
    if role == Role.LEADER:
        if office:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Staff-Office: a leader has none")
        return Actor(user, Role.LEADER)
    if office not in set(Office):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "X-Staff-Office: an office code is required")
    return Actor(user, Role(role), Office(office))
