"""The plans the product starts with (Free is the default), seeded by migration and restorable by tests."""

PLANS = [
    # name, slug, default, metered, per minute, hour, day, month, concurrency, endpoint limits
    ("Free", "free", True, False, 10, 200, 1_000, 10_000, 2, [("/v1/*/summarization", "minute", 5)]),
    ("Starter", "starter", False, False, 60, 2_000, 20_000, 300_000, 5, []),
    ("Pro", "pro", False, False, 600, 20_000, 200_000, 3_000_000, 20, []),
    ("Pay-as-you-go", "payg", False, True, 120, 5_000, 50_000, None, 10, []),
]
# Stripe prices and what customers read; staff set the real price ids in admin.
PRICES = {
    "free": ("", "Free"),
    "starter": ("price_starter_monthly", "$29 a month"),
    "pro": ("price_pro_monthly", "$199 a month"),
    "payg": ("price_payg_words", "$0.50 per 1,000 words"),
}


def seed_plans(Plan, EndpointLimit) -> None:
    """Create the starting plans that do not exist yet (models passed in: migrations use historical ones)."""
    for position, (name, slug, default, metered, minute, hour, day, month, concurrency, endpoints) in enumerate(PLANS):
        plan, created = Plan.objects.get_or_create(
            slug=slug,
            defaults=dict(
                name=name, is_default=default, metered=metered, per_minute=minute, per_hour=hour, per_day=day,
                per_month=month, concurrency=concurrency, position=position,
                stripe_price_id=PRICES[slug][0], price_label=PRICES[slug][1],
            ),
        )
        if created:
            for pattern, window, quota in endpoints:
                EndpointLimit.objects.create(plan=plan, pattern=pattern, window=window, quota=quota)
