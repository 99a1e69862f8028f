"""The global access switch; everything else ops shows belongs to the other apps."""

from django.db import models


class AccessPause(models.Model):
    """While `active`, every /v1 request gets 503 `access_paused` with `message`.

    One row (pk 1). Postgres holds the truth; the gateway reads the fast-state copy
    (`pause:global`), which ops.services writes after commit and the `ops.sync_access_pause`
    beat task rebuilds when fast state lost it.
    """

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID, editable=False)
    active = models.BooleanField(default=False)
    message = models.CharField(
        max_length=500,
        blank=True,
        default="",
        help_text="Shown to customers in the 503 error body.",
    )
    changed_at = models.DateTimeField(null=True, blank=True)
    changed_by = models.CharField(max_length=255, blank=True, default="")

    class Meta:
        db_table = "access_pause"
        verbose_name = "global access pause"
        verbose_name_plural = "global access pause"
        # The ops dashboard's own permission (ops.views.dashboard): staff see it only when
        # granted it (directly or through a group); superusers have every permission.
        permissions = [("view_dashboard", "Can view the ops dashboard")]

    def __str__(self) -> str:
        return "paused" if self.active else "serving"
