from django import forms
from django.contrib import admin

from pools import services
from portal.errors import PortalError
from pools.models import Model, ModelAlias, Route, Router, RouterPool


class AliasInline(admin.TabularInline):
    model = ModelAlias
    extra = 0


class RouteInline(admin.TabularInline):
    model = Route
    extra = 0


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "display_name",
        "status",
        "context_window",
        "max_output_tokens",
        "input_price_per_mtok",
        "output_price_per_mtok",
    ]
    list_filter = ["status"]
    search_fields = ["name", "display_name", "aliases__alias"]
    inlines = [AliasInline, RouteInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from pools.catalog import bump_on_commit

        bump_on_commit()


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "model"]
    search_fields = ["alias", "model__name"]
    list_select_related = ["model"]


class RouterForm(forms.ModelForm):
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


@admin.register(Router)
class RouterAdmin(admin.ModelAdmin):
    form = RouterForm
    list_display = ["name", "pool", "base_url", "weight", "enabled", "has_key"]
    list_filter = ["enabled", "pool"]
    search_fields = ["name", "base_url", "pool__name"]
    list_select_related = ["pool"]

    @admin.display(boolean=True, description="key set")
    def has_key(self, obj: Router) -> bool:
        return bool(obj.api_key_sealed)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        new_key = form.cleaned_data.get("new_api_key")
        if new_key:
            services.router_set_key(router=obj, api_key=new_key)
        from pools.catalog import bump_on_commit

        bump_on_commit()


@admin.register(RouterPool)
class RouterPoolAdmin(admin.ModelAdmin):
    list_display = ["name", "status", "created_at"]
    list_filter = ["status"]
    search_fields = ["name"]
    inlines = [RouteInline]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from pools.catalog import bump_on_commit

        bump_on_commit()


@admin.register(Route)
class RouteAdmin(admin.ModelAdmin):
    list_display = ["model", "pool", "session_id", "api_style", "prompt_template", "priority"]
    list_filter = ["api_style", "prompt_template", "pool"]
    search_fields = ["model__name", "pool__name"]
    list_select_related = ["model", "pool"]

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        from pools.catalog import bump_on_commit

        bump_on_commit()
