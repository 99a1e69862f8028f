"""`manage.py simulate_router --port P`: a simulated Cortensor router node (see ROUTER_API.md)."""

from django.core.management.base import BaseCommand, CommandError

from pools.simulator import SimConfig, config_update, run
from pools.simulator.structured import JSON_MODES, TOOL_MODES


class Command(BaseCommand):
    help = (
        "Run a simulated Cortensor router. Prints 'simulate_router listening on http://HOST:PORT' "
        "once it accepts connections; knobs can also be changed live with POST /_sim/config."
    )
    # A router stand-in: it never touches the database.
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="Interface (default 127.0.0.1).")
        parser.add_argument("--port", type=int, default=9101, help="Port (default 9101; 0 = any).")
        parser.add_argument(
            "--latency-ms",
            type=float,
            default=0.0,
            help="Delay before a non-stream answer or a stream's headers.",
        )
        parser.add_argument(
            "--ttft-ms", type=float, default=0.0, help="Stream time to first token."
        )
        parser.add_argument(
            "--tokens-per-second", type=float, default=0.0, help="Stream pacing (0 = unpaced)."
        )
        parser.add_argument(
            "--completion-tokens",
            type=int,
            default=16,
            help="Tokens per answer unless max_tokens is lower (default 16).",
        )
        parser.add_argument(
            "--failure-rate",
            type=float,
            default=0.0,
            help="Fraction 0..1 of completions answered with --fail-status.",
        )
        parser.add_argument(
            "--fail-status", type=int, default=500, help="Status of injected failures (400-599)."
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed for --failure-rate.")
        parser.add_argument(
            "--disconnect-after-tokens",
            type=int,
            default=0,
            help="Streams: drop the connection after N tokens, before [DONE] (0 = never).",
        )
        parser.add_argument(
            "--omit-usage", action="store_true", help="Send no usage, streamed or not."
        )
        parser.add_argument(
            "--usage-multiplier",
            type=int,
            default=1,
            help="Report N times the true token counts: an over-reporting router (default 1).",
        )
        parser.add_argument(
            "--require-key", default="", help="Completions need 'Authorization: Bearer KEY'."
        )
        parser.add_argument(
            "--sessions", default="", help="Allowed session ids, e.g. 1,2,3 (default: any)."
        )
        parser.add_argument("--model-name", default="sim-model", help="`model` in answers.")
        parser.add_argument(
            "--tool-mode",
            choices=TOOL_MODES,
            default="call",
            help="Prompts with tools: a well-formed call (default), plain text instead, "
            "a call with broken JSON, or arguments that break the function's schema.",
        )
        parser.add_argument(
            "--json-mode",
            choices=JSON_MODES,
            default="valid",
            help="Prompts with an output format: a valid object (default), one in ```json "
            "fences, broken JSON, or an object that breaks the schema.",
        )
        parser.add_argument(
            "--fault-count",
            type=int,
            default=-1,
            help="Spoil only the next N tool/JSON answers by --tool-mode/--json-mode, then "
            "answer well-formed again (default -1: all of them).",
        )
        parser.add_argument(
            "--parallel-calls",
            type=int,
            default=1,
            help="Calls per tool-call answer, cycling through the tools (default 1; one "
            "when the prompt names a function or allows at most one).",
        )
        parser.add_argument(
            "--quiet",
            action="store_true",
            help="No per-request log lines, even with -v 2 (the default logs only the start line).",
        )

    def handle(self, *args, host, port, verbosity, quiet, **options):
        knobs = {
            name: options[name]
            for name in (
                "latency_ms",
                "ttft_ms",
                "tokens_per_second",
                "completion_tokens",
                "failure_rate",
                "fail_status",
                "seed",
                "disconnect_after_tokens",
                "omit_usage",
                "usage_multiplier",
                "require_key",
                "sessions",
                "model_name",
                "tool_mode",
                "json_mode",
                "fault_count",
                "parallel_calls",
            )
        }
        knobs["quiet"] = quiet or verbosity < 2
        if not 0 <= port <= 65535:
            raise CommandError(f"--port must be 0-65535, got {port}")
        try:
            config = config_update(SimConfig(host=host, port=port), knobs)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        run(config, out=self.stdout)
