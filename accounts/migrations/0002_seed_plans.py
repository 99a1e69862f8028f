"""Seed the `free` and `pro` plans; staff edit the numbers in the admin."""

from django.db import migrations

from accounts.plan_defaults import DEFAULT_PLANS, ensure_default_plans


def seed(apps, schema_editor):
    ensure_default_plans(apps.get_model("accounts", "Plan"))


def unseed(apps, schema_editor):
    Plan = apps.get_model("accounts", "Plan")
    Plan.objects.filter(code__in=[p["code"] for p in DEFAULT_PLANS], subscriptions__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
