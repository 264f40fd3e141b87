"""The console's pure parts: the cookie signature, and which dev accounts the credentials name."""

from __future__ import annotations

from xinfang_console.__main__ import dev_accounts
from xinfang_console.sessions import sign, unsign

from xinfang_shared.contracts.reference import Office
from xinfang_shared.staff import Role


def test_a_cookie_is_believed_only_with_its_signature() -> None:
    signed = sign("token-123", "secret")
    assert unsign(signed, "secret") == "token-123"
    assert unsign(signed, "another secret") is None
    assert unsign("token-124" + signed[len("token-123") :], "secret") is None, "the token changed"
    assert unsign("token-123", "secret") is None and unsign("", "secret") is None and unsign(None, "secret") is None


def test_the_dev_accounts_are_a_clerk_and_a_head_per_office_and_one_leader() -> None:
    environ = {"STAFF_USER_leader": "leader", "STAFF_PASSWORD_leader": "p" * 20}
    for office in Office:
        key = office.value.replace("-", "_")
        for role in ("clerk", "head"):
            environ[f"STAFF_USER_{key}_{role}"] = f"{office.value}.{role}"
            environ[f"STAFF_PASSWORD_{key}_{role}"] = "p" * 20
    found = dev_accounts(environ)
    assert len(found) == 2 * len(Office) + 1
    assert ("letters-1.clerk", Role.CLERK, Office.LETTERS_1, "p" * 20) in found
    assert ("leader", Role.LEADER, None, "p" * 20) in found
    del environ["STAFF_PASSWORD_leader"]
    assert ("leader", Role.LEADER, None, "p" * 20) not in dev_accounts(environ), "no password, no account"
