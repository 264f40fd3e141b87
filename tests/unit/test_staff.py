"""Who acts, decided on the server (shared/staff.py): the rights of clerks, heads, leaders and operators, and a
person believed only from the console's own credential."""

# No `from __future__ import annotations`: FastAPI evaluates the route's signature, which names a local dependency.

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from xinfang_shared.contracts.reference import Office
from xinfang_shared.staff import Actor, Role, actor_dependency, names_a_person, person_named

OPERATOR, CONSOLE = "op-key", "console-key"


@pytest.mark.parametrize(
    ("actor", "read", "change", "send_out", "personal"),
    [
        (Actor("ops"), True, True, True, True),
        (Actor("li", Role.CLERK, Office.LETTERS_2), True, True, False, True),
        (Actor("chen", Role.HEAD, Office.LETTERS_2), True, True, True, True),
        (Actor("wang", Role.CLERK, Office.ONLINE), False, False, False, False),
        (Actor("wu", Role.HEAD, Office.ONLINE), False, False, False, False),
        (Actor("zhao", Role.LEADER), True, False, False, False),
    ],
)
def test_the_rights_on_a_matter_of_letters_2(
    actor: Actor, read: bool, change: bool, send_out: bool, personal: bool
) -> None:
    office = "letters-2"
    assert (actor.may_read(office), actor.may_change(office), actor.may_send_out(office)) == (read, change, send_out)
    assert actor.may_see_personal_data(office) is personal
    assert not Actor("li", Role.CLERK, Office.LETTERS_2).may_change(None), "a matter in no office: operators only"


async def _who(headers: dict[str, str], console: str | None = CONSOLE) -> httpx.Response:
    app = FastAPI()

    @app.get("/who")
    def who(actor: Annotated[Actor, Depends(actor_dependency(OPERATOR, console))]) -> dict[str, str | None]:
        return {"recorded": actor.recorded, "office": actor.office, "role": actor.role}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        return await client.get("/who", headers=headers)


async def test_only_the_console_names_a_person() -> None:
    person = {"X-Staff-User": "li.clerk", "X-Staff-Office": "letters-2", "X-Staff-Role": "clerk"}
    named = await _who({"Authorization": f"Bearer {CONSOLE}"} | person)
    assert named.json() == {"recorded": "staff:li.clerk", "office": "letters-2", "role": "clerk"}
    operator = await _who({"Authorization": f"Bearer {OPERATOR}", "X-Operator": "ops 1"})
    assert operator.json() == {"recorded": "operator:ops 1", "office": None, "role": None}
    # The person's headers with another credential: refused, never believed.
    assert (await _who({"Authorization": f"Bearer {OPERATOR}"} | person)).status_code == 403
    assert (await _who({"Authorization": "Bearer someone-else"} | person)).status_code == 401
    assert (await _who(person)).status_code == 401
    # No console key configured: its would-be key is nobody's.
    assert (await _who({"Authorization": "Bearer "} | person, console=None)).status_code == 401
    assert (await _who({"Authorization": f"Bearer {CONSOLE}"} | person, console=None)).status_code == 401


@pytest.mark.parametrize(
    "person",
    [
        {},
        {"X-Staff-User": "li", "X-Staff-Role": "clerk"},
        {"X-Staff-User": "li", "X-Staff-Role": "clerk", "X-Staff-Office": "nowhere"},
        {"X-Staff-User": "li", "X-Staff-Role": "boss", "X-Staff-Office": "online"},
        {"X-Staff-User": "Li Ming", "X-Staff-Role": "clerk", "X-Staff-Office": "online"},
        {"X-Staff-User": "zhao", "X-Staff-Role": "leader", "X-Staff-Office": "online"},
    ],
)
async def test_the_console_must_name_a_whole_person(person: dict[str, str]) -> None:
    assert (await _who({"Authorization": f"Bearer {CONSOLE}"} | person)).status_code == 422


def test_the_staff_headers_are_read_from_any_mapping_as_from_a_request() -> None:
    """Intake reads them from the console's channel key's request (both its paths) with the same rules."""
    assert not names_a_person({"authorization": "Bearer x"})
    assert names_a_person({"x-staff-role": "clerk"})
    named = person_named({"x-staff-user": "sun.reception", "x-staff-role": "clerk", "x-staff-office": "reception"})
    assert (named.recorded, named.role, named.office) == ("staff:sun.reception", Role.CLERK, Office.RECEPTION)
    for bad in (
        {"x-staff-user": "sun\n", "x-staff-role": "clerk", "x-staff-office": "reception"},
        {"x-staff-user": "sun", "x-staff-role": "boss", "x-staff-office": "reception"},
        {"x-staff-user": "sun", "x-staff-role": "leader", "x-staff-office": "reception"},
        {"x-staff-user": "sun", "x-staff-role": "clerk"},
    ):
        with pytest.raises(HTTPException) as refused:
            person_named(bad)
        assert refused.value.status_code == 422
