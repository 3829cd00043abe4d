"""POST /usage/quantities: the model services report words and characters per call."""

import json

import pytest

from usage.endpoints import MAX_QUANTITIES_BYTES
from usage.models import Quantity

URL = "/usage/quantities"


@pytest.fixture(autouse=True)
def service_token(settings):
    settings.USAGE_SERVICE_TOKEN = "service-secret"


def post(client, body, token="service-secret", raw=False):
    data = body if raw else json.dumps(body)
    return client.post(URL, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_a_valid_batch_is_stored_before_it_is_acknowledged(client, db):
    response = post(
        client,
        [{"request_id": "abc-1", "words": 12, "characters": 80}, {"request_id": "abc_2", "words": 0, "characters": 3}],
    )
    assert response.status_code == 200 and response.json() == {"stored": 2}
    assert sorted(Quantity.objects.values_list("request_id", "words", "characters")) == [
        ("abc-1", 12, 80),
        ("abc_2", 0, 3),
    ]


def test_reporting_twice_keeps_one_row_with_the_last_values(client, db):
    post(client, [{"request_id": "abc", "words": 1, "characters": 1}])
    post(client, [{"request_id": "abc", "words": 7, "characters": 9}])
    assert list(Quantity.objects.values_list("words", "characters")) == [(7, 9)]


@pytest.mark.parametrize("token", ["", "wrong", "service-secret-but-longer"])
def test_a_customer_or_unknown_token_is_refused(client, db, token):
    response = post(client, [{"request_id": "a", "words": 1, "characters": 1}], token=token)
    assert response.status_code == 401 and response["Content-Type"] == "application/problem+json"
    assert not Quantity.objects.exists()


def test_without_a_configured_service_token_everyone_is_refused(client, db, settings):
    settings.USAGE_SERVICE_TOKEN = ""
    assert post(client, [{"request_id": "a", "words": 1, "characters": 1}], token="").status_code == 401


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "{}",
        "[]",
        '{"request_id": "a"}',
        "\xff\xfe",
        "[" + "1," * 20000 + "1]",
        "[" * 100_000 + "]" * 100_000,
    ],
)
def test_malformed_bodies_get_400_with_a_message(client, db, body):
    response = post(client, body, raw=True)
    assert response.status_code == 400 and response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"]


def test_the_largest_valid_batch_fits_in_the_body_limit(client, db):
    batch = [{"request_id": f"{i:064d}", "words": 1_000_000_000, "characters": 1_000_000_000} for i in range(10_000)]
    response = post(client, json.dumps(batch, indent=2), raw=True)
    assert response.status_code == 200 and Quantity.objects.count() == 10_000


def test_a_body_over_the_limit_gets_413(client, db):
    response = post(client, "[" + " " * MAX_QUANTITIES_BYTES + "]", raw=True)
    assert response.status_code == 413 and response["Content-Type"] == "application/problem+json"
    assert f"{MAX_QUANTITIES_BYTES} bytes" in response.json()["detail"]


def test_invalid_items_are_reported_one_by_one_and_nothing_is_stored(client, db):
    response = post(
        client,
        [
            {"request_id": "ok", "words": 1, "characters": 1},
            {"request_id": "bad id!", "words": -1, "characters": 1.5},
            {"request_id": "x", "words": True, "characters": 2, "status": 200},
            "nope",
        ],
    )
    errors = response.json()["errors"]
    assert response.status_code == 400
    assert [(e["index"], e["field"]) for e in errors] == [
        (1, "request_id"),
        (1, "words"),
        (1, "characters"),
        (2, "words"),
        (2, None),
        (3, None),
    ]
    assert not Quantity.objects.exists()


def test_get_is_not_allowed(client, db):
    assert client.get(URL).status_code == 405


def test_a_request_id_twice_in_one_batch_keeps_the_last(client, db):
    response = post(
        client, [{"request_id": "a", "words": 1, "characters": 1}, {"request_id": "a", "words": 2, "characters": 3}]
    )
    assert response.status_code == 200 and response.json() == {"stored": 1}
    assert list(Quantity.objects.values_list("words", "characters")) == [(2, 3)]
