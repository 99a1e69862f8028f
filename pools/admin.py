"""Admin for the catalog. The control fields are read-only once an object exists: staff
change them with the controls (disable a model, drain a pool, disable a router, ...),
whose audited services ops provides (infra.adminactions.provided_control). Every other
edit, inline rows and deletes included, is audited (pools.catalogedits) and bumps the
catalog version."""

import time

from django import forms
from django.contrib import admin
from django.db import transaction
from django.utils import timezone

from infra.adminactions import provided_control
from pools import catalogedits, services
from pools.catalog import bump_on_commit
from pools.health import routers_live
from pools.models import Model, ModelAlias, Route, Router, RouterHealth, RouterPool
from portal.errors import PortalError


class CatalogForm(forms.ModelForm):
    reason = forms.CharField(
        max_length=1000,
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "cols": 70}),
        help_text="Why: recorded in the audit log with your name and the changed fields.",
    )


class CatalogAdmin(admin.ModelAdmin):
    """An admin whose saves and deletes (inline rows and "Delete selected" included) reach
    every gateway process on the next request, the catalog version bumped when the
    transaction commits, and write an audit row with the fields changed before and after."""

    form = CatalogForm

    def audit_extra(self, form) -> dict:
        """What else a save changed that the object's fields do not show (a router's key)."""
        return {}

    def _record(self, request, obj, before, after, reason: str = "") -> None:
        catalogedits.record(
            obj=obj,
            before=before,
            after=after,
            actor=request.user,
            now=timezone.now(),
            reason=reason,
        )

    def save_model(self, request, obj, form, change):
        before = catalogedits.stored_snapshots([obj]).get(id(obj)) if change else None
        super().save_model(request, obj, form, change)
        after = {**catalogedits.snapshot(obj), **self.audit_extra(form)}
        self._record(request, obj, before, after, form.cleaned_data.get("reason", ""))
        bump_on_commit()

    def save_formset(self, request, form, formset, change):
        before = catalogedits.stored_snapshots(f.instance for f in formset.initial_forms)
        super().save_formset(request, form, formset, change)
        reason = form.cleaned_data.get("reason", "")
        for obj in formset.new_objects:
            self._record(request, obj, None, catalogedits.snapshot(obj), reason)
        for obj, _ in formset.changed_objects:
            self._record(request, obj, before.get(id(obj)), catalogedits.snapshot(obj), reason)
        for obj in formset.deleted_objects:
            if id(obj) in before:  # (a row someone else deleted meanwhile has nothing to log)
                self._record(request, obj, before[id(obj)], None, reason)
        bump_on_commit()

    def delete_model(self, request, obj):
        before = catalogedits.snapshot(obj)
        super().delete_model(request, obj)
        self._record(request, obj, before, None)
        bump_on_commit()

    @transaction.atomic
    def delete_queryset(self, request, queryset):
        deleted = [(obj, catalogedits.snapshot(obj)) for obj in queryset]
        super().delete_queryset(request, queryset)
        for obj, before in deleted:
            self._record(request, obj, before, None)
        bump_on_commit()


class AliasFields(forms.ModelForm):
    """Canonical names and aliases share one namespace (a name resolves to one model): an
    alias spelled like a model's name would never be reached, so it is refused."""

    def clean_alias(self) -> str:
        alias = self.cleaned_data["alias"]
        if Model.objects.filter(name=alias).exists():
            raise forms.ValidationError(f"A model is named {alias}: pick another alias.")
        return alias


class AliasForm(AliasFields, CatalogForm):
    pass


class CatalogModelForm(CatalogForm):
    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if ModelAlias.objects.filter(alias=name).exists():
            raise forms.ValidationError(f"{name} is already an alias: pick another name.")
        return name


class AliasInline(admin.TabularInline):
    model = ModelAlias
    form = AliasFields
    extra = 0


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0


@admin.register(Model)
class ModelAdmin(CatalogAdmin):
    list_display = [
        "name",
        "display_name",
        "status",
        "context_window",
        "max_output_tokens",
        "input_price_per_mtok",
        "output_price_per_mtok",
    ]
    form = CatalogModelForm
    list_filter = ["status"]
    search_fields = ["name", "display_name", "aliases__alias"]
    inlines = [AliasInline, RouteInline]
    actions = ["disable_models", "enable_models"]
    disable_models = provided_control(
        name="disable_models",
        description="Disable selected models",
        done="disabled",
        service="model_disable",
        target="model",
        warning="Requests for these models get 403 model_disabled until enabled.",
    )
    enable_models = provided_control(
        name="enable_models",
        description="Enable selected models",
        done="enabled",
        service="model_enable",
        target="model",
    )

    def get_readonly_fields(self, request, obj=None):
        return ["status"] if obj is not None else []


@admin.register(ModelAlias)
class ModelAliasAdmin(CatalogAdmin):
    form = AliasForm
    list_display = ["alias", "model"]
    search_fields = ["alias", "model__name"]
    list_select_related = ["model"]


class RouterForm(CatalogForm):
    """The router key is write-only: staff can set a new one, never read the old."""

    base_url = forms.CharField(max_length=300, help_text="http(s)://host[:port][/path]")
    new_api_key = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current key.",
    )

    class Meta:
        model = Router
        fields = ["pool", "name", "base_url", "weight", "enabled"]

    def clean_base_url(self) -> str:
        # Bare service names (http://router-sim:9101) are valid router addresses.
        try:
            return services.clean_base_url(self.cleaned_data["base_url"])
        except PortalError as err:
            raise forms.ValidationError(err.message) from None


def _now_ms() -> int:
    return int(time.time() * 1000)


@admin.register(Router)
class RouterAdmin(CatalogAdmin):
    """Routers with their last probe (health, latency), breaker state and in-flight requests."""

    form = RouterForm
    list_display = [
        "name",
        "pool",
        "base_url",
        "weight",
        "enabled",
        "health",
        "probe_latency",
        "completion_latency",
        "checked",
        "breaker",
        "inflight",
        "has_key",
    ]
    list_filter = ["enabled", "pool", "health__ok", "health__slow"]
    search_fields = ["name", "base_url", "pool__name"]
    list_select_related = ["pool", "health"]
    actions = ["disable_routers", "enable_routers", "reset_breakers"]
    disable_routers = provided_control(
        name="disable_routers",
        description="Disable selected routers",
        done="disabled",
        service="router_disable",
        target="router",
        warning="No new requests go to these routers; requests in flight finish.",
    )
    enable_routers = provided_control(
        name="enable_routers",
        description="Enable selected routers",
        done="enabled",
        service="router_enable",
        target="router",
    )
    reset_breakers = provided_control(
        name="reset_breakers",
        description="Close the circuit breaker of selected routers",
        done="reset",
        service="router_reset_breaker",
        target="router",
    )

    def get_readonly_fields(self, request, obj=None):
        # Enabling and disabling go through the audited router actions.
        return ["enabled"] if obj is not None else []

    def _live(self, obj: Router):
        if not hasattr(obj, "_live_state"):  # two columns, one fast-state read per row
            obj._live_state = routers_live([obj.pk], now_ms=_now_ms()).get(obj.pk)
        return obj._live_state

    @staticmethod
    def _health(obj: Router) -> RouterHealth | None:
        try:
            return obj.health
        except RouterHealth.DoesNotExist:
            return None

    @admin.display(boolean=True, description="up", ordering="health__ok")
    def health(self, obj: Router) -> bool | None:
        health = self._health(obj)
        return health.ok if health else None

    @admin.display(description="probe latency", ordering="health__latency_ms")
    def probe_latency(self, obj: Router) -> str:
        health = self._health(obj)
        return f"{health.latency_ms} ms" if health else "-"

    @admin.display(description="first token", ordering="health__completion_ms")
    def completion_latency(self, obj: Router) -> str:
        """The probe's one-token completion, to its first byte; SLOW past ROUTER_SLOW_SECONDS."""
        health = self._health(obj)
        if health is None or (health.completion_ms is None and not health.slow):
            return "-"
        measured = f"{health.completion_ms} ms" if health.completion_ms is not None else "?"
        return f"SLOW ({measured})" if health.slow else measured

    @admin.display(description="last probe", ordering="health__checked_at")
    def checked(self, obj: Router) -> str:
        health = self._health(obj)
        if health is None:
            return "never"
        seconds = int((timezone.now() - health.checked_at).total_seconds())
        fails = (
            f", {health.consecutive_failures} failed in a row"
            if health.consecutive_failures
            else ""
        )
        return f"{seconds}s ago{fails}"

    @admin.display(description="breaker")
    def breaker(self, obj: Router) -> str:
        live = self._live(obj)
        return f"{live.breaker} ({live.fails} fails)" if live else "unknown"

    @admin.display(description="in flight")
    def inflight(self, obj: Router) -> str:
        live = self._live(obj)
        return str(live.inflight) if live else "?"

    @admin.display(boolean=True, description="key set")
    def has_key(self, obj: Router) -> bool:
        return bool(obj.api_key_sealed)

    def audit_extra(self, form) -> dict:
        return {"api_key": "replaced"} if form.cleaned_data.get("new_api_key") else {}

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        new_key = form.cleaned_data.get("new_api_key")
        if new_key:
            services.router_set_key(router=obj, api_key=new_key)


@admin.register(RouterPool)
class RouterPoolAdmin(CatalogAdmin):
    list_display = ["name", "status", "routers_up", "inflight", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [RouteInline]
    actions = ["drain_pools", "activate_pools", "disable_pools"]
    drain_pools = provided_control(
        name="drain_pools",
        description="Drain selected pools",
        done="draining",
        service="pool_drain",
        target="pool",
        warning="No new requests go to these pools; requests in flight finish.",
    )
    activate_pools = provided_control(
        name="activate_pools",
        description="Undrain / enable selected pools",
        done="active",
        service="pool_activate",
        target="pool",
    )
    disable_pools = provided_control(
        name="disable_pools",
        description="Disable selected pools",
        done="disabled",
        service="pool_disable",
        target="pool",
        warning="No new requests go to these pools; requests in flight finish.",
    )

    def get_readonly_fields(self, request, obj=None):
        # Drain, undrain and disable go through the audited pool actions.
        return ["status"] if obj is not None else []

    @admin.display(description="routers up")
    def routers_up(self, obj: RouterPool) -> str:
        enabled = obj.routers.filter(enabled=True)
        return f"{enabled.filter(health__ok=True).count()} / {enabled.count()}"

    @admin.display(description="in flight")
    def inflight(self, obj: RouterPool) -> str:
        ids = list(obj.routers.values_list("pk", flat=True))
        live = routers_live(ids, now_ms=_now_ms())
        return str(sum(state.inflight for state in live.values())) if live or not ids else "?"


@admin.register(Route)
class RouteAdmin(CatalogAdmin):
    list_display = ["model", "pool", "session_id", "api_style", "prompt_template", "priority"]
    list_filter = ["api_style", "prompt_template", "pool"]
    search_fields = ["model__name", "pool__name"]
    list_select_related = ["model", "pool"]
