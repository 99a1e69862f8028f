"""The plans every installation starts with; staff edit the numbers in the admin."""

DEFAULT_PLANS = [
    {
        "code": "free",
        "name": "Free",
        "requests_per_minute": 10,
        "tokens_per_minute": 20_000,
        "concurrent_requests": 2,
        "window_requests": 20,
        "window_seconds": 300,
        "weekly_requests": 1_000,
        "weekly_tokens": 500_000,
        "max_active_keys": 3,
        "all_models": True,
        "is_default": True,
    },
    {
        "code": "pro",
        "name": "Pro",
        "requests_per_minute": 600,
        "tokens_per_minute": 1_000_000,
        "concurrent_requests": 50,
        "window_requests": 3_000,
        "window_seconds": 300,
        "weekly_requests": 200_000,
        "weekly_tokens": 200_000_000,
        "max_active_keys": 25,
        "all_models": True,
        "is_default": False,
    },
]


def ensure_default_plans(plan_model) -> None:
    """Create the default plans that are missing (existing rows keep staff's edits)."""
    for fields in DEFAULT_PLANS:
        plan_model.objects.get_or_create(code=fields["code"], defaults=fields)
