"""The plans the product starts with (Free is the default), seeded by migration and restorable by tests.

Each is the Plan's fields by name, plus its endpoint limits; staff set the real Stripe price ids in admin.
"""

PLANS = [
    dict(
        name="Free",
        slug="free",
        is_default=True,
        per_minute=10,
        per_hour=200,
        per_day=1_000,
        per_month=10_000,
        concurrency=2,
        price_label="Free",
        endpoint_limits=[dict(pattern="/v1/*/summarization", window="minute", quota=5)],
    ),
    dict(
        name="Starter",
        slug="starter",
        per_minute=60,
        per_hour=2_000,
        per_day=20_000,
        per_month=300_000,
        concurrency=5,
        stripe_price_id="price_starter_monthly",
        price_label="$29 a month",
    ),
    dict(
        name="Pro",
        slug="pro",
        per_minute=600,
        per_hour=20_000,
        per_day=200_000,
        per_month=3_000_000,
        concurrency=20,
        stripe_price_id="price_pro_monthly",
        price_label="$199 a month",
    ),
    dict(
        name="Pay-as-you-go",
        slug="payg",
        metered=True,
        per_minute=120,
        per_hour=5_000,
        per_day=50_000,
        concurrency=10,
        stripe_price_id="price_payg_words",
        price_label="$0.50 per 1,000 words",
        cents_per_1000_words=50,
    ),
]


def seed_plans(Plan, EndpointLimit) -> None:
    """Create the starting plans that do not exist yet (models passed in: migrations use historical ones)."""
    for position, fields in enumerate(PLANS):
        known = {field.name for field in Plan._meta.concrete_fields}  # an early migration's Plan lacks later fields
        endpoint_limits = fields.get("endpoint_limits", [])
        fields = {name: value for name, value in fields.items() if name in known}
        plan, created = Plan.objects.get_or_create(slug=fields.pop("slug"), defaults={**fields, "position": position})
        if created:
            for limit in endpoint_limits:
                EndpointLimit.objects.create(plan=plan, **limit)
