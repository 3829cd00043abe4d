"""The organizations migrations on a populated database: today's users and their data move into
personal organizations with no loss, and every token keeps working (issue 15)."""

import secrets
from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

import accounts.models as accounts
import billing.models as billing
from tests.helpers import forward_auth

BEFORE = [
    ("accounts", "0003_token_restrictions"),
    ("billing", "0007_spend_alerts"),
    ("usage", "0008_calls_blocked_feed"),
]
TOKEN_FIELDS = ["name", "prefix", "digest", "created", "revoked_at", "allowed_endpoints", "allowed_networks"]
TOKEN_FIELDS += ["last_used", "expires_on", "per_minute"]
CUSTOMER_FIELDS = ["plan_id", "stripe_id", "current_period_start", "current_period_end", "stripe_subscription"]
CALLS = "SELECT account_id, token_id, request_id, words FROM api_calls ORDER BY request_id"
# Inside every restricted token's allowances, so each answer tells whether the secret itself still works.
CALL = {"HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_FORWARDED_URI": "/v1/en/entities"}


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor


def new_secret() -> dict:
    """A token's prefix, digest and secret, as accounts.models.ApiToken.issue makes them."""
    prefix = accounts.TOKEN_MARKER + secrets.token_hex(accounts.PREFIX_LENGTH // 2)
    secret = f"{prefix}_{secrets.token_urlsafe(accounts.SECRET_BYTES)}"
    return {"prefix": prefix, "digest": accounts.token_digest(secret).hex(), "secret": secret}


def populate(apps) -> dict[str, str]:
    """Users of every kind, their tokens, a paying customer and usage; returns each token's secret by prefix."""
    User, ApiToken, Plan = (apps.get_model(name) for name in ["accounts.User", "accounts.ApiToken", "billing.Plan"])
    staff = User.objects.create(email="staff@example.com", password="!", is_staff=True, is_superuser=True)
    ada = User.objects.create(email="ada@example.com", password="!")
    grace = User.objects.create(email="grace@example.com", password="!")
    gone = User.objects.create(email="gone@example.com", password="!", is_active=False)
    restricted = {
        "allowed_endpoints": ["/v1/*/entities"],
        "allowed_networks": ["203.0.113.0/24"],
        "expires_on": date.today() + timedelta(days=30),
        "per_minute": 10,
    }
    tokens = [
        (staff, {"last_used": datetime.now(UTC)}),
        (ada, {}),
        (ada, restricted),
        (ada, {"revoked_at": datetime.now(UTC)}),
        (grace, {}),
        (gone, {}),
    ]
    secrets_by_prefix = {}
    for number, (user, fields) in enumerate(tokens):
        secret = new_secret()
        secrets_by_prefix[secret["prefix"]] = secret.pop("secret")
        ApiToken.objects.create(user=user, name=f"token {number}", **secret, **fields)
    apps.get_model("billing.Customer").objects.create(
        user=grace,
        plan=Plan.objects.get(slug="pro"),
        stripe_id="cus_grace",
        stripe_subscription={"id": "sub_grace", "status": "active"},
        current_period_start=datetime.now(UTC) - timedelta(days=3),
        current_period_end=datetime.now(UTC) + timedelta(days=27),
    )
    with connection.cursor() as cursor:
        for number, token in enumerate(ApiToken.objects.exclude(user=staff)):
            cursor.execute(
                "INSERT INTO api_calls (time, account_id, token_id, endpoint, method, status, words, request_id)"
                " VALUES (now(), %s, %s, '/v1/en/entities', 'POST', 200, %s, %s)",
                [token.user_id, token.id, 100 + number, f"request-{number}"],
            )
    return secrets_by_prefix


def calls() -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(CALLS)
        return cursor.fetchall()


@pytest.mark.django_db(transaction=True)
def test_users_tokens_customers_and_usage_move_into_personal_organizations(usage_store):
    try:
        apps = migrate(BEFORE).loader.project_state(BEFORE).apps
        token_secrets = populate(apps)
        users = {user.id: user for user in apps.get_model("accounts.User").objects.all()}
        tokens = {token.id: token for token in apps.get_model("accounts.ApiToken").objects.all()}
        (customer,) = apps.get_model("billing.Customer").objects.all()
        usage = calls()

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        for user in users.values():
            (organization,) = accounts.Organization.objects.filter(members__id=user.id)
            assert (organization.id, organization.name, organization.is_active) == (user.id, user.email, user.is_active)
            assert organization.memberships.get().role == "owner"
        assert accounts.Organization.objects.count() == len(users)
        for token in accounts.ApiToken.objects.all():
            old = tokens[token.id]
            assert (token.organization_id, token.created_by_id) == (old.user_id, old.user_id)
            assert [getattr(token, field) for field in TOKEN_FIELDS] == [getattr(old, field) for field in TOKEN_FIELDS]
        assert accounts.ApiToken.objects.count() == len(tokens)
        moved = billing.Customer.objects.get()
        assert moved.organization_id == customer.user_id
        assert [getattr(moved, field) for field in CUSTOMER_FIELDS] == [getattr(customer, f) for f in CUSTOMER_FIELDS]
        assert calls() == usage
        assert accounts.Organization.objects.create(name="new").id > max(users)

        auth = forward_auth()
        for old in tokens.values():
            answer = auth.answer({**CALL, "HTTP_AUTHORIZATION": f"Bearer {token_secrets[old.prefix]}"})
            works = old.revoked_at is None and users[old.user_id].is_active
            assert answer.status == (200 if works else 401), old.name
            if works:
                headers = dict(answer.headers)
                assert (headers["X-Organization-Id"], headers["X-User-Id"]) == (str(old.user_id), str(old.user_id))
                assert headers["X-Plan"] == ("pro" if old.user_id == customer.user_id else "free")
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
