import json
import logging

import pytest

from xinfang_shared.logging import MASK, JsonFormatter, redact

ID_NUMBER = "51010419900307123X"
MOBILE = "13812345678"


@pytest.mark.parametrize(
    "text",
    [
        f"petitioner {ID_NUMBER} called",
        f"phone={MOBILE}",
        "phone +86 13912345678",
        "landline 028-86123456",
        "mail zhang.san@example.cn",
        "550 5.1.1 <zhang.san@example.cn>: Recipient address rejected",
        "+8613912345678 is not a valid number",
        "isv.MOBILE_NUMBER_ILLEGAL: +86 139 1234 5678",
        "号码139-1234-5678无效",
        "call 139 1234 5678.",
        "landline (028) 8612 3456",
        "landline 028 8612-3456",
    ],
)
def test_redact_masks_personal_data(text: str) -> None:
    out = redact(text)
    assert "[redacted]" in out
    for secret in (ID_NUMBER, MOBILE, "13912345678", "86123456", "zhang.san@example.cn", "1234 5678", "1234-5678"):
        assert secret not in out
    assert not any(group in out for group in ("8612", "3456")), out


@pytest.mark.parametrize(
    "text",
    [
        "matter 3f2b8c1e-9d4a-4c51-8f0e-1a2b3c4d5e6f offset 1234567 tracking XF7K-2M9Q-P",
        # all-digit groups of a UUID, shaped like a grouped mobile or landline
        "event abcde139-1234-5678-9abc-def012345678 and 3f2b8c1e-0123-4567-8901-1a2b3c4d5e6f",
        "at 2026-01-02T08:00:00+08:00, 120 of 1385 records in 0.028 s",
    ],
)
def test_redact_leaves_identifiers_alone(text: str) -> None:
    assert redact(text) == text


def test_json_formatter_redacts_message_and_extras() -> None:
    record = logging.makeLogRecord(
        {"msg": "got %s", "args": (ID_NUMBER,), "levelname": "INFO", "name": "t", "phone": MOBILE}
    )
    line = JsonFormatter("test").format(record)
    entry = json.loads(line)
    assert entry["service"] == "test"
    assert ID_NUMBER not in line and MOBILE not in line
    assert entry["phone"] == "[redacted]"


@pytest.mark.timeout(60)
def test_masking_a_long_text_without_an_address_ends() -> None:
    """A refused submission's text goes through the same masking (personal.masked_submission): a long run of letters
    once made the e-mail pattern try every start position to the end, minutes for a 300 KB body."""
    for text in ("x" * 2_000_000, "a.b-" * 500_000, "长" * 1_000_000):
        assert redact(text) == text
    assert redact("x" * 100_000 + " li@example.org") == "x" * 100_000 + " " + MASK
