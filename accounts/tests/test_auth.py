import re

from django.core import mail
from django.urls import reverse

from accounts.models import User
from conftest import PASSWORD


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


def test_a_wrong_old_password_is_a_field_error(customer_client):
    response = customer_client.post(
        reverse("password_change"), {"old_password": "nope", "new_password1": "x", "new_password2": "x"}
    )
    assert response.status_code == 200
    assert "Your old password was entered incorrectly" in response.content.decode()


def test_resetting_a_forgotten_password_by_email(client, customer):
    client.post(reverse("password_reset"), {"email": customer.email})
    assert len(mail.outbox) == 1
    link = re.search(r"http://[^/]+(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form_url = client.get(link)["Location"]  # Django swaps the token for a session marker
    new = "a much better passphrase 42"
    response = client.post(form_url, {"new_password1": new, "new_password2": new})
    assert response["Location"] == reverse("password_reset_complete")
    customer.refresh_from_db()
    assert customer.check_password(new)


def test_a_bad_reset_link_says_so(client, db):
    response = client.get("/password-reset/Mg/bad-token/")
    assert response.status_code == 200
    assert "invalid or has already been used" in response.content.decode()
