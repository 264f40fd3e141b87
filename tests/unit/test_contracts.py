import pytest
from pydantic import SecretStr, ValidationError

from xinfang_intake.settings import IntakeSettings
from xinfang_notify.settings import NotifySettings
from xinfang_routing.settings import RoutingSettings
from xinfang_shared.contracts.events import Petitioner, Submission
from xinfang_shared.settings import ServiceSettings
from xinfang_stats.settings import StatsSettings
from xinfang_supervision.settings import SupervisionSettings

# What production needs of every service besides its own secrets: the brokers over TLS, as its own principal.
PRODUCTION_KAFKA = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "service-x",
    "kafka_sasl_password": SecretStr("a-real-one"),
}
PERSONAL_KEYS = ("personal_data_key", "personal_data_transport_key")


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


@pytest.mark.parametrize(
    ("settings", "secrets"),
    [
        (ServiceSettings, ("operator_api_key",)),
        (SupervisionSettings, ("operator_api_key",)),
        (StatsSettings, ("operator_api_key",)),
        (RoutingSettings, ("operator_api_key", *PERSONAL_KEYS)),
        (NotifySettings, ("operator_api_key", *PERSONAL_KEYS, "sms_access_key", "sms_receipt_token")),
        (IntakeSettings, ("operator_api_key", *PERSONAL_KEYS, "personal_data_hash_key")),
    ],
)
def test_production_refuses_the_local_dev_secret(settings: type[ServiceSettings], secrets: tuple[str, ...]) -> None:
    real = {name: SecretStr("a-real-one") for name in secrets}
    extra = {"smtp_url": "smtps://mail.example.org"} if settings is NotifySettings else {}
    for missing in real:
        with pytest.raises(ValidationError, match=missing):
            others = {name: value for name, value in real.items() if name != missing}
            settings(environment="production", _env_file=None, **PRODUCTION_KAFKA, **others, **extra)
    settings(environment="production", _env_file=None, **PRODUCTION_KAFKA, **real, **extra)


def test_only_intake_routing_and_notify_hold_personal_data_keys() -> None:
    """Supervision and stats read registrations too, but the sealed block is ciphertext to them: they have no
    setting that could hold a key."""
    for holder in (IntakeSettings, RoutingSettings, NotifySettings):
        assert set(PERSONAL_KEYS) <= set(holder.model_fields), holder
    for other in (SupervisionSettings, StatsSettings, ServiceSettings):
        assert not {f for f in other.model_fields if f.startswith("personal_data")}, other
    assert "personal_data_hash_key" in IntakeSettings.model_fields
    assert "personal_data_hash_key" not in RoutingSettings.model_fields | NotifySettings.model_fields


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_production_reaches_kafka_over_tls_only(protocol: str) -> None:
    with pytest.raises(ValidationError, match="KAFKA_SECURITY_PROTOCOL"):
        ServiceSettings(
            environment="production",
            _env_file=None,
            operator_api_key=SecretStr("a-real-one"),
            **(PRODUCTION_KAFKA | {"kafka_security_protocol": protocol}),
        )


def test_sasl_needs_a_username_and_a_password() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        ServiceSettings(_env_file=None, environment="test", kafka_security_protocol="SASL_PLAINTEXT")


def test_a_refused_setting_does_not_show_the_secrets_it_was_given() -> None:
    with pytest.raises(ValidationError) as refused:
        IntakeSettings(
            _env_file=None,
            environment="production",
            operator_api_key="the-operators-own-secret",  # as the environment gives them: plain text
            personal_data_key="a-key-nobody-may-read",
        )
    assert "must be" in str(refused.value)
    assert "a-key-nobody-may-read" not in str(refused.value) and "the-operators-own-secret" not in str(refused.value)
