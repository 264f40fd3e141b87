"""The other services' public HTTP APIs, which are all the console reads and changes: as the signed-in person
(the console's own key, and who: shared/staff.py), or anonymously for the petitioners' page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import httpx

from .accounts import Account

# httpx logs every request's URL at INFO, and a petitioner's look-up URL holds their tracking code.
logging.getLogger("httpx").setLevel(logging.WARNING)


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    retry_after: str | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def staff_headers(person: Account) -> dict[str, str]:
    """Who the person is, as the services believe it from the console's own credential alone (shared/staff.py):
    with the console's key, or at reception with the console's channel key for intake."""
    headers = {"X-Staff-User": person.username, "X-Staff-Role": person.role.value}
    if person.office is not None:
        headers["X-Staff-Office"] = person.office.value
    return headers


class Backends:
    def __init__(
        self,
        *,
        console_key: str,
        routing: str,
        supervision: str,
        intake: str,
        notify: str,
        stats: str,
        timeout_s: float,
        transports: dict[str, httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        transports = transports or {}
        self._key = console_key
        self._clients = {
            name: httpx.AsyncClient(base_url=url, timeout=timeout_s, transport=transports.get(name))
            for name, url in (
                ("routing", routing),
                ("supervision", supervision),
                ("intake", intake),
                ("notify", notify),
                ("stats", stats),
            )
        }

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    def _as(self, person: Account | None) -> dict[str, str]:
        if person is None:
            return {}
        return {"Authorization": f"Bearer {self._key}"} | staff_headers(person)

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        person: Account | None,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """The service's answer; a service that cannot be reached answers 503. `headers`: instead of a person's
        (reception's channel key; a petitioner's address for intake's public limits)."""
        try:
            sent = headers if headers is not None else self._as(person)
            response = await self._clients[service].request(method, path, headers=sent, json=json, params=params)
        except httpx.HTTPError:
            return Answer(503, {"detail": f"{service} cannot be reached"})
        try:
            body = response.json()
        except ValueError:
            body = None
        return Answer(response.status_code, body, response.headers.get("retry-after"))

    async def relay(
        self, service: str, path: str, *, person: Account | None, params: Any = None, accept: str | None = None
    ) -> httpx.Response:
        """A GET passed on as it is answered (the stats dashboard's files and figures), as the person; a service
        that cannot be reached answers 503."""
        headers = self._as(person) | ({"Accept": accept} if accept else {})
        try:
            return await self._clients[service].get(path, headers=headers, params=params)
        except httpx.HTTPError:
            return httpx.Response(503, json={"detail": f"{service} cannot be reached"})
