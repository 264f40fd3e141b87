import json
import logging

import pytest

from xinfang_shared.logging import JsonFormatter, redact

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
    ],
)
def test_redact_masks_personal_data(text: str) -> None:
    out = redact(text)
    assert "[redacted]" in out
    for secret in (ID_NUMBER, MOBILE, "13912345678", "86123456", "zhang.san@example.cn"):
        assert secret not in out


def test_redact_leaves_identifiers_alone() -> None:
    text = "matter 3f2b8c1e-9d4a-4c51-8f0e-1a2b3c4d5e6f offset 1234567 tracking XF7K-2M9Q-P"
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
