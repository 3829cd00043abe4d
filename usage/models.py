from django.db import models


class ApiCall(models.Model):
    """A usage event (the `api_calls` hypertable or table, created by migration 0002 from usage/sql/)."""

    pk = models.CompositePrimaryKey("request_id", "time")
    time = models.DateTimeField()
    account_id = models.BigIntegerField()
    token_id = models.BigIntegerField(null=True)
    endpoint = models.TextField()
    method = models.TextField()
    status = models.SmallIntegerField()
    words = models.IntegerField(default=0)
    characters = models.IntegerField(default=0)
    request_id = models.TextField()
    unchecked = models.BooleanField(default=False)  # let through while the rate-limit counters were down

    class Meta:
        managed = False
        db_table = "api_calls"


class UsageBucket(models.Model):
    """Counts and sums of calls per (bucket, account, endpoint): a continuous aggregate or a trigger-kept table."""

    pk = models.CompositePrimaryKey("account_id", "bucket", "endpoint")
    bucket = models.DateTimeField()
    account_id = models.BigIntegerField()
    endpoint = models.TextField()
    requests = models.BigIntegerField()
    errors = models.BigIntegerField()
    words = models.BigIntegerField()
    characters = models.BigIntegerField()

    class Meta:
        abstract = True
        managed = False


class HourlyUsage(UsageBucket):
    class Meta(UsageBucket.Meta):
        db_table = "api_calls_hourly"


class DailyUsage(UsageBucket):
    class Meta(UsageBucket.Meta):
        db_table = "api_calls_daily"


class Quantity(models.Model):
    """Words and characters a model service reported for a call, until merged into its event."""

    request_id = models.CharField(max_length=64, primary_key=True)
    words = models.PositiveIntegerField()
    characters = models.PositiveIntegerField()
    received = models.DateTimeField(auto_now_add=True, db_index=True)


class DeadLetter(models.Model):
    """A usage event the database refused for its data, set aside by the flusher (usage/recorder.py) with the error."""

    failed_at = models.DateTimeField(db_index=True)
    event = models.TextField(
        help_text="The event as JSON (time, account, token, endpoint, method, status, request id, unchecked)."
    )
    error = models.TextField()

    def __str__(self) -> str:
        return f"Dead letter {self.pk} ({self.failed_at:%Y-%m-%d %H:%M})"
