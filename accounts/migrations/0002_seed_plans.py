"""Seed the `free` and `pro` plans; staff edit the numbers in the admin."""

from django.db import migrations

PLANS = [
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


def seed(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    for fields in PLANS:
        Plan.objects.update_or_create(code=fields["code"], defaults=fields)


def unseed(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    Plan.objects.filter(code__in=[p["code"] for p in PLANS], subscriptions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
