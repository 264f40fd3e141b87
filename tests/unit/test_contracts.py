import pytest
from pydantic import SecretStr, ValidationError

from xinfang_shared.contracts.events import Petitioner, Submission
from xinfang_shared.settings import ServiceSettings


def _submission(**overrides: object) -> dict:
    body: dict = {
        "external_id": "L-1",
        "channel": "letter",
        "submitted_at": "2026-11-01T09:00:00+08:00",
        "petitioner": {"name": "张三", "id_number": "11010519491231002X", "phone": "13812345678"},
        "title": "工资拖欠",
        "content": "某公司拖欠工资三个月",
    }
    return body | overrides


def test_submission_defaults_follow_the_contract() -> None:
    s = Submission.model_validate(_submission())
    assert (s.kind.value, s.addressee.value, s.headcount, s.level.value) == (
        "complaint",
        "bureau",
        1,
        "local",
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"submitted_at": "2026-11-01T09:00:00"}, "submitted_at"),
        ({"title": ""}, "title"),
        ({"content": "x" * 20_001}, "content"),
        ({"headcount": 0}, "headcount"),
        ({"external_id": "x" * 129}, "external_id"),
    ],
)
def test_submission_shape_errors_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Submission.model_validate(_submission(**overrides))
    assert field in {str(e["loc"][0]) for e in info.value.errors()}


def test_personal_data_stays_out_of_repr() -> None:
    p = Petitioner(name="张三", id_number="11010519491231002X", phone="13812345678", email="a@b.cn")
    assert "11010519491231002X" not in repr(p) and "13812345678" not in repr(p) and "张三" not in repr(p)


def test_production_refuses_the_local_dev_secret() -> None:
    real = {
        name: SecretStr("a-real-one") for name in ("operator_api_key", "personal_data_key", "personal_data_hash_key")
    }
    for missing in real:
        with pytest.raises(ValidationError, match=missing):
            others = {name: value for name, value in real.items() if name != missing}
            ServiceSettings(environment="production", _env_file=None, **others)
    ServiceSettings(environment="production", _env_file=None, **real)
