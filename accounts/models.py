"""Users (auth-provider identities), organizations, memberships, plans, subscriptions, audit."""

import uuid

from django.db import models
from django.utils import timezone


class User(models.Model):
    """A customer identity from Clerk, Supabase Auth or the dev signer.

    Not Django's staff user: staff sign into the admin with `auth.User`.
    """

    class Status(models.TextChoices):
        ACTIVE = "active"
        DISABLED = "disabled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    auth_provider = models.CharField(max_length=20)
    subject = models.CharField(max_length=255, help_text="The JWT `sub` at the auth provider.")
    email = models.EmailField(blank=True, default="")
    display_name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "users"
        # "Users" in the admin are the staff (`auth.User`); these are the customers.
        verbose_name = "customer user"
        verbose_name_plural = "customer users"
        constraints = [
            models.UniqueConstraint(
                fields=["auth_provider", "subject"], name="users_provider_subject_uniq"
            )
        ]

    def __str__(self) -> str:
        return self.email or f"{self.auth_provider}:{self.subject}"

    # DRF's IsAuthenticated reads these from request.user.
    is_authenticated = True
    is_anonymous = False


class Organization(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DISABLED = "disabled"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    personal_for = models.OneToOneField(
        User,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="personal_org",
        help_text="Set on the org created for a user at sign-up.",
    )
    # Staff overrides of the plan's limits for this organization (empty: the plan's);
    # accounts.limits.org_limits applies them, accounts.limits.org_set_limit_override sets them.
    requests_per_minute_override = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute_override = models.PositiveIntegerField(null=True, blank=True)
    weekly_requests_override = models.PositiveIntegerField(null=True, blank=True)
    weekly_tokens_override = models.PositiveBigIntegerField(null=True, blank=True)
    allowance_reset_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="A one-off allowance reset: usage before it does not count against the "
        "allowance of the period it falls in.",
    )
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "organizations"

    def __str__(self) -> str:
        return self.name


class OrganizationMember(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        ADMIN = "admin"
        MEMBER = "member"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)
    # Services pass `now`; staff adding a membership in the admin get the time of the save.
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        db_table = "organization_members"
        constraints = [
            models.UniqueConstraint(fields=["org", "user"], name="org_members_org_user_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} ({self.role})"

    @property
    def can_manage_keys(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Plan(models.Model):
    """Limits and entitlements; every number is editable in the admin."""

    code = models.SlugField(max_length=40, unique=True)
    name = models.CharField(max_length=100)
    requests_per_minute = models.PositiveIntegerField()
    tokens_per_minute = models.PositiveIntegerField()
    concurrent_requests = models.PositiveIntegerField()
    window_requests = models.PositiveIntegerField(help_text="Short-window request cap.")
    window_seconds = models.PositiveIntegerField(help_text="Length of the short window.")
    weekly_requests = models.PositiveIntegerField(help_text="Requests allowed per weekly period.")
    weekly_tokens = models.PositiveBigIntegerField(help_text="Tokens allowed per weekly period.")
    max_active_keys = models.PositiveIntegerField()
    all_models = models.BooleanField(
        default=True, help_text="Entitled to every model; otherwise only the model access policies."
    )
    is_default = models.BooleanField(
        default=False, help_text="The plan new organizations start on."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "plans"

    def __str__(self) -> str:
        return self.name


class ModelAccessPolicy(models.Model):
    """One model a plan without `all_models` may use, by its canonical model name."""

    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="model_policies")
    model_name = models.CharField(max_length=100)

    class Meta:
        db_table = "model_access_policies"
        verbose_name_plural = "model access policies"
        constraints = [
            models.UniqueConstraint(
                fields=["plan", "model_name"], name="model_access_plan_model_uniq"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plan.code}: {self.model_name}"


class PlanSubscription(models.Model):
    """An org's plan and its current allowance period [start, end)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        CANCELED = "canceled"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    current_period_start = models.DateTimeField()
    current_period_end = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = "plan_subscriptions"
        constraints = [
            models.UniqueConstraint(
                fields=["org"],
                condition=models.Q(status="active"),
                name="plan_subscriptions_one_active_per_org",
            )
        ]

    def __str__(self) -> str:
        return f"{self.org} on {self.plan}"


class AuditEvent(models.Model):
    """Who did what to which object, when and why; written by services, read-only in the admin."""

    actor_type = models.CharField(max_length=20, help_text="user, staff or system")
    actor_id = models.CharField(max_length=64, blank=True, default="")
    actor_label = models.CharField(max_length=255, blank=True, default="")
    org = models.ForeignKey(Organization, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=60)
    target_type = models.CharField(max_length=60)
    target_id = models.CharField(max_length=64)
    reason = models.TextField(blank=True, default="")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "audit_log"
        indexes = [models.Index(fields=["target_type", "target_id"], name="audit_target_idx")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target_type}:{self.target_id}"
