"""Organizations: tokens belong to one, users are its members (with roles); invitations; the audit log.

Every user gets a personal organization whose id is the user's id, with them as its
owner, and their tokens move into it (created_by: them). The id is kept because the
usage store and the rate-limit counters are keyed by account, which was the user id:
history, counters and billing carry on untouched. ApiToken.user goes in 0005, once
the change feed's triggers no longer watch it (usage 0009).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

ROLES = [("owner", "Owner"), ("developer", "Developer"), ("billing", "Billing"), ("viewer", "Viewer")]
ACTIONS = [
    ("token_created", "Token created"),
    ("token_rotated", "Token rotated"),
    ("token_revoked", "Token revoked"),
    ("restrictions_changed", "Token restrictions changed"),
    ("member_invited", "Member invited"),
    ("member_joined", "Member joined"),
    ("member_removed", "Member removed"),
    ("role_changed", "Role changed"),
    ("plan_changed", "Plan changed"),
]

PERSONAL_ORGANIZATIONS = """
INSERT INTO accounts_organization (id, name, is_active, created)
SELECT id, email, is_active, date_joined FROM accounts_user;
SELECT setval(pg_get_serial_sequence('accounts_organization', 'id'), coalesce(max(id), 0) + 1, false)
FROM accounts_organization;
INSERT INTO accounts_membership (organization_id, user_id, role, joined)
SELECT id, id, 'owner', date_joined FROM accounts_user;
UPDATE accounts_apitoken SET organization_id = user_id, created_by_id = user_id;
"""

NEVER_CHANGED = """
CREATE FUNCTION accounts_auditevent_never_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are never changed';
END $$;
CREATE TRIGGER never_changed BEFORE UPDATE ON accounts_auditevent
    FOR EACH ROW EXECUTE FUNCTION accounts_auditevent_never_changed();
"""
CHANGEABLE = """
DROP TRIGGER never_changed ON accounts_auditevent;
DROP FUNCTION accounts_auditevent_never_changed();
"""


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_token_restrictions")]

    operations = [
        migrations.CreateModel(
            name="Organization",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=254)),
                (
                    "is_active",
                    models.BooleanField(
                        default=True, help_text="Inactive: every token of the organization is refused."
                    ),
                ),
                ("created", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
            options={"ordering": ["name", "pk"]},
        ),
        migrations.CreateModel(
            name="Membership",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("role", models.CharField(choices=ROLES, max_length=10)),
                ("joined", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="accounts.organization",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["joined", "pk"],
                "constraints": [
                    models.UniqueConstraint(fields=("organization", "user"), name="one_membership_per_user")
                ],
            },
        ),
        migrations.AddField(
            model_name="organization",
            name="members",
            field=models.ManyToManyField(
                related_name="organizations", through="accounts.Membership", to=settings.AUTH_USER_MODEL
            ),
        ),
        migrations.CreateModel(
            name="Invitation",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("email", models.EmailField(max_length=254, verbose_name="e-mail address")),
                ("role", models.CharField(choices=ROLES, max_length=10)),
                ("created", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
                ("accepted_at", models.DateTimeField(blank=True, editable=False, null=True)),
                (
                    "invited_by",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="invitations",
                        to="accounts.organization",
                    ),
                ),
            ],
            options={"ordering": ["-created"]},
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("action", models.CharField(choices=ACTIONS, max_length=30)),
                ("subject", models.CharField(help_text="What it was done to, as it was then.", max_length=300)),
                (
                    "actor",
                    models.CharField(blank=True, help_text="The member's e-mail; empty: the system.", max_length=254),
                ),
                ("ip", models.GenericIPAddressField(blank=True, null=True, verbose_name="client address")),
                ("created", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                (
                    "organization",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="audit_events",
                        to="accounts.organization",
                    ),
                ),
            ],
            options={"ordering": ["-created", "-pk"]},
        ),
        migrations.RunSQL(NEVER_CHANGED, CHANGEABLE),
        migrations.AddField(
            model_name="apitoken",
            name="organization",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="tokens",
                to="accounts.organization",
            ),
        ),
        migrations.AddField(
            model_name="apitoken",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="tokens_created",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunSQL(PERSONAL_ORGANIZATIONS, migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="apitoken",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE, related_name="tokens", to="accounts.organization"
            ),
        ),
    ]
