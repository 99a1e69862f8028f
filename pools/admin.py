from django.contrib import admin

from pools.models import Model, ModelAlias


class AliasInline(admin.TabularInline):
    model = ModelAlias
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
    inlines = [AliasInline]


@admin.register(ModelAlias)
class ModelAliasAdmin(admin.ModelAdmin):
    list_display = ["alias", "model"]
    search_fields = ["alias", "model__name"]
    list_select_related = ["model"]
