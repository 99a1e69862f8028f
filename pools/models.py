"""The model catalog: public names, aliases and integer prices."""

from django.db import models


class Model(models.Model):
    """A model customers can call, by its canonical public name (e.g. `gemma-4-26b`)."""

    class Status(models.TextChoices):
        ENABLED = "enabled"
        DISABLED = "disabled"

    name = models.SlugField(max_length=100, unique=True)
    display_name = models.CharField(max_length=200)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ENABLED)
    context_window = models.PositiveIntegerField(default=8192)
    max_output_tokens = models.PositiveIntegerField(default=2048)
    input_price_per_mtok = models.PositiveBigIntegerField(
        default=0, help_text="Micro-USD per million input tokens."
    )
    output_price_per_mtok = models.PositiveBigIntegerField(
        default=0, help_text="Micro-USD per million output tokens."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "models"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ModelAlias(models.Model):
    """Another public name for a model (`default`, `qwen-latest`, …)."""

    alias = models.SlugField(max_length=100, unique=True)
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="aliases")

    class Meta:
        db_table = "model_aliases"
        ordering = ["alias"]

    def __str__(self) -> str:
        return f"{self.alias} -> {self.model.name}"
