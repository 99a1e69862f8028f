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
        verbose_name_plural = "model aliases"
        ordering = ["alias"]

    def __str__(self) -> str:
        return f"{self.alias} -> {self.model.name}"


class RouterPool(models.Model):
    """A group of routers serving the same models (one per family: `oss-20b`, `gemma4`, `qwen`)."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        DRAINING = "draining"
        DISABLED = "disabled"

    name = models.SlugField(max_length=60, unique=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "router_pools"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Router(models.Model):
    """One Cortensor router node. Its API key is sealed at rest and never shown."""

    pool = models.ForeignKey(RouterPool, on_delete=models.CASCADE, related_name="routers")
    name = models.CharField(max_length=60)
    base_url = models.CharField(max_length=300, help_text="http(s)://host[:port][/path]")
    api_key_sealed = models.TextField(blank=True, default="", help_text="Encrypted router API key.")
    weight = models.PositiveIntegerField(default=1)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "routers"
        ordering = ["pool__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["pool", "name"], name="routers_pool_name_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.pool.name}/{self.name}"


class Route(models.Model):
    """Model -> pool, with the router session that serves it and how to talk to it."""

    class ApiStyle(models.TextChoices):
        CORTENSOR = "cortensor", "Cortensor completions (prompt)"
        OPENAI = "openai", "OpenAI chat (messages pass through)"

    class Template(models.TextChoices):
        CHATML = "chatml"
        GEMMA = "gemma"
        LLAMA3 = "llama3"
        PLAIN = "plain"

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="routes")
    pool = models.ForeignKey(RouterPool, on_delete=models.CASCADE, related_name="routes")
    session_id = models.PositiveIntegerField(help_text="The router session serving this model.")
    session_in_path = models.BooleanField(
        default=False, help_text="POST /api/v1/completions/{session_id} instead of a body field."
    )
    prompt_template = models.CharField(
        max_length=20, choices=Template.choices, default=Template.CHATML
    )
    api_style = models.CharField(
        max_length=20, choices=ApiStyle.choices, default=ApiStyle.CORTENSOR
    )
    priority = models.PositiveIntegerField(default=100, help_text="Lower is tried first.")

    class Meta:
        db_table = "router_pool_models"
        ordering = ["model__name", "priority", "id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "pool"], name="routes_model_pool_uniq")
        ]

    def __str__(self) -> str:
        return f"{self.model.name} -> {self.pool.name} (session {self.session_id})"


class RouterHealth(models.Model):
    """The last probe of a router (beat task and `manage.py check_routers`): its
    `GET /api/v1/status`, and a one-token completion timed to its first byte (pools/health.py)."""

    router = models.OneToOneField(
        Router, primary_key=True, on_delete=models.CASCADE, related_name="health"
    )
    ok = models.BooleanField()
    latency_ms = models.PositiveIntegerField()
    consecutive_failures = models.PositiveIntegerField(default=0)
    checked_at = models.DateTimeField()
    last_ok_at = models.DateTimeField(null=True, blank=True)
    completion_ms = models.PositiveIntegerField(
        null=True, blank=True, help_text="Ms to the first byte of the probe's one-token completion."
    )
    slow = models.BooleanField(
        default=False, help_text="Slower than ROUTER_SLOW_SECONDS: picked only as a last resort."
    )

    class Meta:
        db_table = "router_health"
        verbose_name_plural = "router health"

    def __str__(self) -> str:
        return f"{self.router_id}: {('slow' if self.slow else 'up') if self.ok else 'down'}"
