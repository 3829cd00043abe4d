import pytest

from accounts.models import ApiToken, token_digest, token_prefix
from tests.helpers import authenticates, forward_auth


def test_an_issued_token_authenticates_and_is_stored_only_as_a_keyed_hash(customer):
    token, secret = ApiToken.issue(customer.default_organization(), "production")
    token.refresh_from_db()
    assert secret.startswith(token.prefix + "_")
    assert token.prefix.startswith("nlp_")
    assert secret not in token.digest and token.digest == token_digest(secret).hex()
    assert authenticates(secret)


def test_tokens_are_high_entropy_and_distinct(customer):
    secrets = {ApiToken.issue(customer.default_organization(), f"t{i}")[1] for i in range(20)}
    assert len(secrets) == 20
    assert all(len(secret) == 56 for secret in secrets)  # nlp_ + 8 + _ + 43 (256 random bits)


def test_a_wrong_secret_with_a_valid_prefix_does_not_authenticate(customer):
    token, secret = ApiToken.issue(customer.default_organization(), "production")
    forged = secret[:-4] + ("AAAA" if not secret.endswith("AAAA") else "BBBB")
    assert not authenticates(forged)


def test_a_revoked_token_no_longer_authenticates(customer):
    token, secret = ApiToken.issue(customer.default_organization(), "production")
    token.revoke()
    assert not authenticates(secret)


def test_rotation_replaces_the_secret_and_keeps_the_token(customer):
    token, old_secret = ApiToken.issue(customer.default_organization(), "production")
    new_secret = token.rotate()
    assert not authenticates(old_secret) and authenticates(new_secret)
    assert ApiToken.objects.get(prefix=token_prefix(new_secret)).pk == token.pk


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "nlp_",
        "Bearer x",
        "nlp_ABCDEFGH_" + "a" * 43,
        "nlp_abcdefgh_" + "a" * 42,
        "nlp_abcdéfgh_" + "a" * 43,
        "x" * 10_000,
        "nlp_abcdefgh-" + "a" * 43,
        "\x00" * 56,
    ],
)
def test_malformed_tokens_are_rejected_before_any_lookup(garbage, django_assert_num_queries, db):
    assert token_prefix(garbage) is None
    auth = forward_auth()
    auth.start()  # the plans
    with django_assert_num_queries(0):
        assert not authenticates(garbage, auth)
