import hashlib
import hmac
import ipaddress
import re
import secrets
import string
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as BaseUserManager
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models, transaction
from django.utils import timezone

TOKEN_MARKER = "nlp_"
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8
PREFIX_CHARS = set(PREFIX_ALPHABET)
PREFIX_END = len(TOKEN_MARKER) + PREFIX_LENGTH
SECRET_BYTES = 32
SECRET_LENGTH = 43  # len(secrets.token_urlsafe(SECRET_BYTES))
TOKEN_LENGTH = PREFIX_END + 1 + SECRET_LENGTH


class UserManager(BaseUserManager):
    """Users are identified by e-mail; there is no username. Each is created with their personal
    organization (as sign-up and the migration to organizations make them)."""

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        with transaction.atomic(using=self._db):
            user.save(using=self._db)
            Organization.create_personal(user)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", True)
        extra_fields.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    username = None
    email = models.EmailField("e-mail address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = []

    objects = UserManager()

    def __str__(self) -> str:
        return self.email

    def default_organization(self) -> "Organization | None":
        """The organization a session starts in: the first the user joined (their personal one)."""
        membership = self.memberships.select_related("organization").first()  # ordered by joined
        return membership.organization if membership else None


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    DEVELOPER = "developer", "Developer"
    BILLING = "billing", "Billing"
    VIEWER = "viewer", "Viewer"


# What each role may do (README, "Organizations"); views check it with accounts.organizations.member_can.
PERMISSIONS = {
    "usage": {Role.OWNER, Role.DEVELOPER, Role.BILLING, Role.VIEWER},
    "tokens": {Role.OWNER, Role.DEVELOPER},
    "billing": {Role.OWNER, Role.BILLING},
    "members": {Role.OWNER},
    "audit": {Role.OWNER},
}


class Organization(models.Model):
    """Who buys API access: tokens, usage (the store's `account`), the Stripe customer and the plan
    belong to it; users are its members. Signing up creates a personal one.

    Staff deactivate an organization (is_active) to stop all its tokens at once.
    """

    name = models.CharField(max_length=254)  # a personal one is named by its owner's e-mail address
    is_active = models.BooleanField(default=True, help_text="Inactive: every token of the organization is refused.")
    created = models.DateTimeField(default=timezone.now, editable=False)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="organizations")

    class Meta:
        ordering = ["name", "pk"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def create_personal(cls, user: User) -> "Organization":
        organization = cls.objects.create(name=user.email)
        Membership.objects.create(organization=organization, user=user, role=Role.OWNER)
        return organization

    @property
    def owners(self) -> models.QuerySet:
        return self.memberships.filter(role=Role.OWNER)

    def billing_emails(self) -> list[str]:
        """Who hears about quotas and payments: the owners and billing members."""
        members = self.memberships.filter(role__in=PERMISSIONS["billing"], user__is_active=True)
        return list(members.values_list("user__email", flat=True))


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices)
    joined = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["joined", "pk"]
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.get_role_display()})"

    def can(self, action: str) -> bool:
        return self.role in PERMISSIONS[action]


def token_hash_key() -> bytes:
    """TOKEN_HASH_KEY as a BLAKE2b key (64 bytes at most)."""
    return hashlib.blake2b(settings.TOKEN_HASH_KEY.encode()).digest()


def token_digest(token: str, key: bytes | None = None) -> bytes:
    """The keyed BLAKE2b hash (a MAC, RFC 7693) of a token: all that is stored of it."""
    return hashlib.blake2b(token.encode("utf-8", "replace"), key=key or token_hash_key(), digest_size=32).digest()


def token_prefix(token: str) -> str | None:
    """The visible prefix (`nlp_xxxxxxxx`) of a well-formed token, else None."""
    prefix, separator, secret = token[:PREFIX_END], token[PREFIX_END : PREFIX_END + 1], token[PREFIX_END + 1 :]
    body = prefix.removeprefix(TOKEN_MARKER)
    if separator != "_" or len(secret) != SECRET_LENGTH or len(body) != PREFIX_LENGTH or not set(body) <= PREFIX_CHARS:
        return None
    return prefix


def token_matches(token: str, digest: bytes, key: bytes | None = None) -> bool:
    """Whether `token` is the secret whose keyed hash is `digest`, compared in constant time.

    With token_prefix(), the one check of a token (forward-auth's, usage/forward_auth.py).
    """
    return hmac.compare_digest(digest, token_digest(token, key))


endpoint_pattern = RegexValidator(
    r"^/[A-Za-z0-9._~\-/*]*$", "A path such as /v1/*/summarization: letters, digits, / . _ ~ - and * for one segment."
)


def pattern_regex(pattern: str) -> re.Pattern:
    """An endpoint pattern's regex: `*` matches one path segment; the pattern matches the whole path (no query)."""
    return re.compile("".join("[^/]+" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)) + "$")


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A client network as written (`203.0.113.0/24`, `2001:db8::/32`, or one address); ValueError if malformed."""
    return ipaddress.ip_network(value.strip(), strict=False)


class ApiTokenQuerySet(models.QuerySet):
    def active(self):
        return self.filter(revoked_at__isnull=True)


class ApiToken(models.Model):
    """An organization's key to the NLP API, and the member who created it.

    The secret is shown once at creation; only its keyed hash and a short
    visible prefix are stored. Triggers of the usage app (its migrations 0006,
    0009) watch this table and accounts_organization for forward-auth; its
    recorder sets last_used.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="tokens")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="tokens_created"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=20, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Restrictions, checked by forward-auth on top of the plan (README, "Token restrictions"); watched
    # by the change feed's trigger (usage migration 0007).
    allowed_endpoints = ArrayField(
        models.CharField(max_length=200, validators=[endpoint_pattern]),
        default=list,
        blank=True,
        help_text="Only these endpoints, e.g. /v1/*/entities (* = one path segment). Empty: every endpoint.",
    )
    allowed_networks = ArrayField(
        models.CharField(max_length=49),
        default=list,
        blank=True,
        help_text="Only calls from these client networks, e.g. 203.0.113.0/24 or 2001:db8::/32. Empty: any.",
    )
    expires_on = models.DateField(
        null=True, blank=True, help_text="Last day the token works (UTC); refused from the day after. Empty: never."
    )
    per_minute = models.PositiveIntegerField(
        "calls per minute",
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A limit for this token alone, on top of your plan's. Empty: the plan's only.",
    )

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @property
    def is_restricted(self) -> bool:
        return bool(self.allowed_endpoints or self.allowed_networks or self.expires_on or self.per_minute)

    def restrictions_text(self) -> str:
        """The restrictions in one line (the audit log's record of a change)."""
        parts = [
            self.allowed_endpoints and f"endpoints {', '.join(self.allowed_endpoints)}",
            self.allowed_networks and f"networks {', '.join(self.allowed_networks)}",
            self.expires_on and f"expires after {self.expires_on:%Y-%m-%d}",
            self.per_minute and f"{self.per_minute} calls per minute",
        ]
        return f"{self}: {'; '.join(part for part in parts if part) or 'none'}"

    @property
    def is_expired(self) -> bool:
        return self.expires_on is not None and self.expires_on < timezone.now().date()

    @property
    def expires_at(self) -> datetime | None:
        """The instant the token stops working: the start of the day after its last day (UTC)."""
        return expiry_instant(self.expires_on) if self.expires_on else None

    @classmethod
    def issue(cls, organization: Organization, name: str, created_by=None, **restrictions) -> tuple["ApiToken", str]:
        """Create a token (with any restrictions); returns it with its secret, which is never stored."""
        token = cls(organization=organization, name=name, created_by=created_by, **restrictions)
        secret = token._new_secret()
        token.save()
        return token, secret

    def rotate(self) -> str:
        """Replace the secret (the old one stops working at once); returns the new one."""
        secret = self._new_secret()
        self.created = timezone.now()
        self.last_used = None
        self.save(update_fields=["prefix", "digest", "created", "last_used"])
        return secret

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])

    def _new_secret(self) -> str:
        body = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
        self.prefix = TOKEN_MARKER + body
        secret = f"{self.prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        self.digest = token_digest(secret).hex()
        return secret


def expiry_instant(last_day: date) -> datetime:
    return datetime.combine(last_day + timedelta(days=1), time(), UTC)


class SupportMessage(models.Model):
    """A customer's message to support, and staff's answer."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ANSWERED = "answered", "Answered"
        CLOSED = "closed", "Closed"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="support_messages")
    subject = models.CharField(max_length=150)
    message = models.TextField(max_length=5000)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True)
    answer = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    answered_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.subject


class Invitation(models.Model):
    """An owner's invitation to join an organization with a role, e-mailed as a signed link
    (accounts.organizations.invitation_link_token) that expires and is used once (accepted_at)."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField("e-mail address")
    role = models.CharField(max_length=10, choices=Role.choices)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created = models.DateTimeField(default=timezone.now, editable=False)
    accepted_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization} ({self.get_role_display()})"


class AuditEvent(models.Model):
    """Something done in an organization: what, to what, by whom (their e-mail as it was; empty: our
    system or Stripe), when, from which address. Never changed: a trigger refuses every UPDATE
    (accounts migration 0004) and the admin shows them read-only."""

    class Action(models.TextChoices):
        TOKEN_CREATED = "token_created", "Token created"
        TOKEN_ROTATED = "token_rotated", "Token rotated"
        TOKEN_REVOKED = "token_revoked", "Token revoked"
        RESTRICTIONS_CHANGED = "restrictions_changed", "Token restrictions changed"
        MEMBER_INVITED = "member_invited", "Member invited"
        MEMBER_JOINED = "member_joined", "Member joined"
        MEMBER_REMOVED = "member_removed", "Member removed"
        ROLE_CHANGED = "role_changed", "Role changed"
        PLAN_CHANGED = "plan_changed", "Plan changed"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="audit_events")
    action = models.CharField(max_length=30, choices=Action.choices)
    subject = models.CharField(max_length=300, help_text="What it was done to, as it was then.")
    actor = models.CharField(max_length=254, blank=True, help_text="The member's e-mail; empty: the system.")
    ip = models.GenericIPAddressField("client address", null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.get_action_display()}: {self.subject}"
