"""What the console sends for a signed-in person: its own key, and who (shared/staff.py). For the tests of every
service's staff routes, which must believe it from the console's key alone."""

from __future__ import annotations


def staff_headers(console_key: str, user: str, role: str, office: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {console_key}", "X-Staff-User": user, "X-Staff-Role": role}
    return headers | ({"X-Staff-Office": office} if office else {})
