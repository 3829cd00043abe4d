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
from django.db import models
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
    """Users are identified by e-mail; there is no username."""

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An e-mail address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
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
    """A customer's key to the NLP API.

    The secret is shown once at creation; only its keyed hash and a short
    visible prefix are stored. Triggers of the usage app (its migration 0006)
    watch this table and accounts_user for forward-auth; its recorder sets last_used.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tokens")
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

    @property
    def is_expired(self) -> bool:
        return self.expires_on is not None and self.expires_on < timezone.now().date()

    @property
    def expires_at(self) -> datetime | None:
        """The instant the token stops working: the start of the day after its last day (UTC)."""
        return expiry_instant(self.expires_on) if self.expires_on else None

    @classmethod
    def issue(cls, user, name: str, **restrictions) -> tuple["ApiToken", str]:
        """Create a token (with any restrictions); returns it with its secret, which is never stored."""
        token = cls(user=user, name=name, **restrictions)
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
