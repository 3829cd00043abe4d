import calendar
import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from accounts.models import Organization, endpoint_pattern, pattern_regex


class Window(models.TextChoices):
    """The windows a limit counts over. A new one needs its length here, a Plan field and its
    place in Plan.window_limits (README, "Add a limit window")."""

    MINUTE = "minute", "per minute"
    HOUR = "hour", "per hour"
    DAY = "day", "per day"
    MONTH = "month", "per billing period"

    @property
    def seconds(self) -> int | None:
        """The rolling window's length; None for the billing period (one count per period)."""
        return {"minute": 60, "hour": 3600, "day": 86400, "month": None}[self.value]


class PlanQuerySet(models.QuerySet):
    def default(self) -> "Plan":
        """The plan of customers without a paid subscription (Free)."""
        return self.get(is_default=True)

    def of(self, organization) -> "Plan":
        """The plan in effect for an organization."""
        customer = Customer.objects.filter(organization=organization).select_related("plan").first()
        return customer.plan if customer else self.default()


def calendar_month(moment: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month around a moment: the billing period of customers without a subscription."""
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    return start, start + timedelta(days=calendar.monthrange(moment.year, moment.month)[1])


def billing_period(organization, now: datetime) -> tuple[datetime, datetime]:
    """The organization's current billing period: the subscription's while it runs, else the calendar month."""
    customer = Customer.objects.filter(organization=organization).first()
    return customer.billing_period(now) if customer else calendar_month(now)


class Plan(models.Model):
    """What a customer may do: limits per window, per endpoint, in flight; what it costs."""

    name = models.CharField(max_length=50, unique=True)
    slug = models.SlugField(unique=True, help_text="Sent upstream in X-Plan.")
    stripe_price_id = models.CharField(max_length=100, blank=True, help_text="The Stripe price billed for this plan.")
    price_label = models.CharField(max_length=100, blank=True, help_text="As customers read it, e.g. “$29 a month”.")
    is_default = models.BooleanField(
        default=False, help_text="The plan of every customer without a paid subscription. Exactly one plan has it."
    )
    metered = models.BooleanField(default=False, help_text="Pay-as-you-go: words generated are billed.")
    per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    per_hour = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    per_day = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    per_month = models.PositiveIntegerField(
        null=True, blank=True, help_text="Per billing period (calendar month without a subscription). Empty: no limit."
    )
    concurrency = models.PositiveIntegerField(null=True, blank=True, help_text="Requests in flight. Empty: no limit.")
    cents_per_1000_words = models.PositiveIntegerField(
        null=True, blank=True, help_text="Metered plans: the price of 1,000 words in cents (spend caps count with it)."
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the pricing and billing pages.")

    objects = PlanQuerySet.as_manager()

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["is_default"], condition=models.Q(is_default=True), name="one_default_plan")
        ]

    def __str__(self) -> str:
        return self.name

    def window_limits(self) -> dict[str, int]:
        """The plan-wide limits that are set, by window."""
        quotas = {
            Window.MINUTE: self.per_minute,
            Window.HOUR: self.per_hour,
            Window.DAY: self.per_day,
            Window.MONTH: self.per_month,
        }
        return {str(window): quota for window, quota in quotas.items() if quota is not None}


class EndpointLimit(models.Model):
    """A limit on the calls to the paths matching a pattern, e.g. `/v1/*/summarization` at most 5 per minute."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="endpoint_limits")
    pattern = models.CharField(max_length=200, validators=[endpoint_pattern])
    window = models.CharField(max_length=10, choices=Window.choices)
    quota = models.PositiveIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["plan", "pattern", "window"], name="one_limit_per_endpoint_window")
        ]

    def __str__(self) -> str:
        return f"{self.pattern} {self.quota} {self.get_window_display()}"

    def regex(self) -> re.Pattern:
        return pattern_regex(self.pattern)

    def clean(self):
        if "**" in self.pattern:
            raise ValidationError({"pattern": "Use one * per path segment."})


class CallsBlocked(models.TextChoices):
    """Why forward-auth refuses every call of a customer; empty: it does not."""

    NO = "", "not blocked"
    SPEND_CAP = "spend_cap", "spend cap reached"
    PAYMENT_FAILED = "payment_failed", "payment failed"


def default_alert_thresholds() -> list[int]:
    return [80, 100]


class Customer(models.Model):
    """An organization's billing state: the Stripe customer and subscription as Stripe returned them (JSONB),
    and what they imply here: the plan in effect and the current billing period. Triggers of the
    usage app (its migration 0006) watch this table, plans and endpoint limits for forward-auth."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="customer")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="customers")
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    stripe_id = models.CharField("Stripe customer id", max_length=100, blank=True)
    stripe_customer = models.JSONField(null=True, blank=True)
    stripe_subscription = models.JSONField(null=True, blank=True, help_text="The newest subscription.")
    stripe_invoices = models.JSONField(default=list, blank=True, help_text="Recent invoices, newest first.")
    stripe_upcoming_invoice = models.JSONField(null=True, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    metered_since = models.DateTimeField(
        null=True, blank=True, help_text="Since when the plan in effect is metered: words before are not billed."
    )
    alert_thresholds = ArrayField(
        models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(100)]),
        default=default_alert_thresholds,
        blank=True,
        help_text="Percentages of the period's quotas at which the customer is e-mailed; empty: no alerts.",
    )
    words_alert_quota = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Pay-as-you-go: the words per period the customer's alerts count against."
    )
    spend_cap_cents = models.PositiveIntegerField(
        null=True, blank=True, help_text="Pay-as-you-go: the most the customer spends per billing period, in cents."
    )
    calls_blocked = models.CharField(
        max_length=20,
        choices=CallsBlocked.choices,
        default=CallsBlocked.NO,
        blank=True,
        help_text="Why forward-auth refuses every call (set by send_quota_alerts and syncs); empty: not blocked.",
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stripe_id"], condition=~models.Q(stripe_id=""), name="one_customer_per_stripe_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.organization} ({self.plan})"

    def billing_period(self, now: datetime) -> tuple[datetime, datetime]:
        """The current billing period: the subscription's while it runs, else the calendar month."""
        if self.current_period_start and self.current_period_start <= now < self.current_period_end:
            return self.current_period_start, self.current_period_end
        return calendar_month(now)

    @property
    def subscription_status(self) -> str | None:
        return (self.stripe_subscription or {}).get("status")

    @property
    def is_paying(self) -> bool:
        return self.subscription_status in PAYING_STATUSES

    @property
    def payment_failed_since(self) -> datetime | None:
        """While the subscription is past_due or unpaid: when the payment still owed first failed.

        Stripe's subscription does not say when it became past_due; its oldest open
        invoice does: a subscription invoice is charged when it is finalized, so that
        moment is the failure the customer has not fixed (a later invoice failing too
        does not restart the clock). Without one in the cache (only the 12 newest are
        kept), the start of the subscription's current period, when its invoice was made.
        """
        subscription = self.stripe_subscription or {}
        if subscription.get("status") not in FAILED_PAYMENT_STATUSES:
            return None
        owed = [
            (invoice.get("status_transitions") or {}).get("finalized_at") or invoice.get("created")
            for invoice in self.stripe_invoices
            if invoice.get("status") == "open" and subscription_of(invoice) == subscription.get("id")
        ]
        return moment(min(filter(None, owed), default=None) or period_of(subscription, "start"))

    @property
    def payment_grace_until(self) -> datetime | None:
        """While past_due: until when the paid plan stays (FAILED_PAYMENT_GRACE_DAYS); None without a grace."""
        since = self.payment_failed_since
        if since is None or self.subscription_status != "past_due" or not settings.FAILED_PAYMENT_GRACE_DAYS:
            return None
        return since + timedelta(days=settings.FAILED_PAYMENT_GRACE_DAYS)


PAYING_STATUSES = ("active", "trialing")
FAILED_PAYMENT_STATUSES = ("past_due", "unpaid")  # Stripe retries past_due payments; unpaid is after the last retry


def period_of(subscription: dict, edge: str) -> int | None:
    """The current period's start or end: on the subscription (older API versions) or its item (newer)."""
    items = (subscription.get("items") or {}).get("data") or [{}]
    return subscription.get(f"current_period_{edge}") or items[0].get(f"current_period_{edge}")


def subscription_of(invoice: dict) -> str | None:
    """The invoice's subscription: a field of its own in older API versions, under `parent` in newer ones."""
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    return invoice.get("subscription") or details.get("subscription")


def moment(timestamp: int | None) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp else None


class WebhookEvent(models.Model):
    """A Stripe event as delivered, kept by id: processed once however often it arrives."""

    id = models.CharField(max_length=100, primary_key=True)
    type = models.CharField(max_length=100, db_index=True)
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class MeterReport(models.Model):
    """Words of one customer in one hour, as reported to Stripe (pay-as-you-go): the hour's first
    report (sequence 0), then one per later report that found the hour's words grown (late
    quantities), each carrying the difference."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="meter_reports")
    hour = models.DateTimeField()
    sequence = models.PositiveIntegerField(default=0, help_text="0: the hour's first report; n: its n-th late delta.")
    words = models.PositiveBigIntegerField(help_text="The words this report adds to the hour's.")
    dated = models.DateTimeField(
        null=True, blank=True, help_text="The meter event's timestamp: the hour, or the period's start if it is over."
    )
    identifier = models.CharField(max_length=200, unique=True, help_text="Stripe deduplicates meter events on it.")
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-hour", "-sequence"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "hour", "sequence"], name="one_report_per_customer_hour_sequence"
            )
        ]

    def __str__(self) -> str:
        late = f" (late, #{self.sequence})" if self.sequence else ""
        return f"{self.customer.organization} {self.hour:%Y-%m-%d %H:00} {self.words} words{late}"


class QuotaAlert(models.Model):
    """A customer's use of the period reaching a threshold of a quota: recorded once per
    (measure, threshold, period), then e-mailed (sent_at) by `manage.py send_quota_alerts`."""

    class Measure(models.TextChoices):
        CALLS = "calls", "calls"
        WORDS = "words", "words"
        SPEND = "spend", "spend cap"  # cents of the pay-as-you-go customer's spend cap

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="quota_alerts")
    measure = models.CharField(max_length=10, choices=Measure.choices)
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the quota.")
    period_start = models.DateTimeField()
    used = models.PositiveBigIntegerField(help_text="Use of the period when the threshold was found reached.")
    quota = models.PositiveBigIntegerField()
    reached_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True, help_text="When the e-mail went; empty: not yet.")

    class Meta:
        ordering = ["-reached_at", "-threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "measure", "threshold", "period_start"], name="one_alert_per_threshold_and_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.customer.organization} {self.measure} {self.threshold}% of {self.quota}"
