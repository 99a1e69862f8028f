# Over-reported router usage (issue 15): a flag on the request log and the usage event,
# and a partial index for the ops dashboard's count per router.

import django.db.models
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metering", "0006_request_log_unbilled_tokens"),
    ]

    operations = [
        migrations.AddField(
            model_name="requestlog",
            name="usage_capped",
            field=models.BooleanField(
                default=False,
                help_text="The router claimed more tokens than the Portal allows (gateway/tokens.py); billed at the cap.",
            ),
        ),
        migrations.AddField(
            model_name="usageevent",
            name="usage_capped",
            field=models.BooleanField(
                default=False,
                help_text="The router claimed more tokens than the Portal allows (gateway/tokens.py); billed at the cap.",
            ),
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(
                condition=django.db.models.Q(("usage_capped", True)),
                fields=["router_id", "created_at"],
                name="request_logs_capped_idx",
            ),
        ),
    ]
