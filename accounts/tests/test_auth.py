import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts.models import User
from tests.helpers import PASSWORD


def test_signing_up_creates_the_account_and_logs_in(client, db):
    response = client.post(
        reverse("signup"), {"email": "New@Example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302 and response["Location"] == reverse("tokens")
    user = User.objects.get()
    assert user.email == "new@example.com" and user.check_password(PASSWORD)
    assert client.get(reverse("dashboard")).status_code == 200


def test_signing_up_twice_with_one_address_is_a_field_error(client, customer):
    response = client.post(
        reverse("signup"), {"email": "ADA@example.com", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.count() == 1


def test_sign_up_rejects_bad_input_with_field_errors(client, db):
    response = client.post(reverse("signup"), {"email": "not-an-address", "password1": "123", "password2": "456"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "Enter a valid email address." in html
    assert "The two password fields didn’t match." in html
    assert not User.objects.exists()


def test_a_password_the_validators_refuse_is_an_error_under_the_password_not_its_confirmation(client, db):
    response = client.post(reverse("signup"), {"email": "new@example.com", "password1": "123", "password2": "123"})
    errors = response.context["form"].errors
    assert "This password is too short." in errors["password1"][0] and "password2" not in errors
    html = response.content.decode()
    assert html.index("This password is too short.") < html.index('<label for="id_password2"')


def test_passwords_that_differ_are_an_error_under_the_confirmation(client, db):
    response = client.post(
        reverse("signup"), {"email": "new@example.com", "password1": PASSWORD, "password2": PASSWORD + "!"}
    )
    assert response.context["form"].errors == {"password2": ["The two password fields didn’t match."]}


def test_logging_in_and_out(client, customer):
    response = client.post(reverse("login"), {"username": customer.email, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("dashboard")).status_code == 302


def test_changing_the_password(customer_client, customer):
    new = "a much better passphrase 42"
    response = customer_client.post(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": new, "new_password2": new}
    )
    assert response["Location"] == reverse("password_change_done")
    customer.refresh_from_db()
    assert customer.check_password(new)


def test_changing_the_password_logs_out_other_sessions_as_the_done_page_says(customer):
    here, elsewhere = Client(), Client()
    for browser in (here, elsewhere):
        browser.force_login(customer)
    new = "a much better passphrase 42"
    here.post(reverse("password_change"), {"old_password": PASSWORD, "new_password1": new, "new_password2": new})
    assert here.get(reverse("dashboard")).status_code == 200
    assert elsewhere.get(reverse("dashboard"))["Location"].startswith(reverse("login"))
    text = here.get(reverse("password_change_done")).content.decode()
    assert "You stay logged in here" in text and "is logged out at its next request" in text


def test_a_wrong_old_password_is_a_field_error(customer_client):
    response = customer_client.post(
        reverse("password_change"), {"old_password": "nope", "new_password1": "x", "new_password2": "x"}
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()


def test_a_new_password_the_validators_refuse_is_an_error_under_the_new_password(customer_client):
    response = customer_client.post(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": "123", "new_password2": "123"}
    )
    errors = response.context["form"].errors
    assert "This password is too short." in errors["new_password1"][0] and "new_password2" not in errors


@pytest.mark.parametrize("name, field", [("login", "username"), ("signup", "email"), ("password_reset", "email")])
def test_every_form_calls_its_email_field_e_mail_address(client, db, name, field):
    assert f'<label for="id_{field}">E-mail address:</label>' in client.get(reverse(name)).content.decode()


def reset_form_url(client, customer) -> str:
    """The URL of the form to choose a new password, reached through the link sent by e-mail."""
    client.post(reverse("password_reset"), {"email": customer.email})
    assert len(mail.outbox) == 1
    link = re.search(r"http://[^/]+(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    return client.get(link)["Location"]  # Django swaps the token for a session marker


def test_resetting_a_forgotten_password_by_email(client, customer):
    form_url = reset_form_url(client, customer)
    new = "a much better passphrase 42"
    response = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert response["Location"] == reverse("password_reset_complete")
    customer.refresh_from_db()
    assert customer.check_password(new)


def test_a_reset_password_the_validators_refuse_is_an_error_under_the_new_password(client, customer):
    response = client.post(reset_form_url(client, customer), {"new_password1": "123", "new_password2": "123"})
    errors = response.context["form"].errors
    assert "This password is too short." in errors["new_password1"][0] and "new_password2" not in errors


def test_a_bad_reset_link_says_so(client, db):
    response = client.get("/password-reset/Mg/bad-token/")
    assert response.status_code == 200
    assert "invalid or has already been used" in response.content.decode()
