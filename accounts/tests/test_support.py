from django.core import mail
from django.urls import reverse

from accounts.models import SupportMessage


def test_a_message_is_stored_emailed_to_staff_and_listed_with_its_status(customer_client, customer, staff_user):
    response = customer_client.post(
        reverse("support"), {"subject": "Limits", "message": "Can I get 100/min?"}, follow=True
    )
    message = SupportMessage.objects.get()
    assert message.user == customer and message.status == "open"
    assert mail.outbox[-1].to == [staff_user.email] and "Can I get 100/min?" in mail.outbox[-1].body
    assert (
        f"http://testserver/admin/accounts/supportmessage/{message.pk}/change/" in mail.outbox[-1].body
    )  # a link that opens
    html = response.content.decode()
    assert "Message sent." in html and "Limits" in html and "Open" in html


def test_an_empty_message_is_a_field_error(customer_client):
    response = customer_client.post(reverse("support"), {"subject": "", "message": ""})
    assert response.status_code == 200 and response.content.decode().count("This field is required.") == 2
    assert not SupportMessage.objects.exists()


def test_customers_see_only_their_own_messages(client, customer, other_customer):
    SupportMessage.objects.create(user=other_customer, subject="Secret question", message="x")
    client.force_login(customer)
    assert "Secret question" not in client.get(reverse("support")).content.decode()


def test_staff_answer_in_admin_and_the_customer_gets_it_by_mail_and_on_the_page(staff_client, client, customer):
    message = SupportMessage.objects.create(user=customer, subject="Limits", message="More please")
    url = reverse("admin:accounts_supportmessage_change", args=[message.pk])
    staff_client.post(url, {"answer": "Done: you are on Pro now.", "status": "open"})
    message.refresh_from_db()
    assert message.status == "answered" and message.answered_at
    assert mail.outbox[-1].to == [customer.email] and "Done: you are on Pro now." in mail.outbox[-1].body
    client.force_login(customer)
    html = client.get(reverse("support")).content.decode()
    assert "Done: you are on Pro now." in html and "Answered" in html


def test_staff_close_messages_with_an_action(staff_client, customer):
    message = SupportMessage.objects.create(user=customer, subject="Thanks", message="x")
    staff_client.post(
        reverse("admin:accounts_supportmessage_changelist"),
        {"action": "close_messages", "_selected_action": [message.pk]},
    )
    message.refresh_from_db()
    assert message.status == "closed"
