"""Liveness, readiness, Prometheus metrics (summed over several gateway processes) and
JSON logs that carry the request id and no secrets."""

from __future__ import annotations

import io
import json
import logging

import pytest
import requests
from django.test import Client, RequestFactory
from prometheus_client.parser import text_string_to_metric_families

from infra import faststate, metrics
from portal import probes
from portal.logs import JsonFormatter, RequestIdFilter, current_request_id
from portal.middleware import RequestIdMiddleware
from tests.factories import seeding
from tests.support import live
from tests.support.processes import dead_url

# --- /healthz and /readyz -------------------------------------------------------------------


def test_healthz_answers_without_touching_anything():
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response["x-request-id"].startswith("req_")


@pytest.mark.django_db
def test_readyz_checks_postgres_redis_and_the_broker(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = settings.REDIS_URL or "redis://127.0.0.1:6379/1"
    response = Client().get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name: check["status"] for name, check in body["checks"].items()} == {
        "database": "ok",
        "fast_state": "ok",
        "broker": "ok",
    }


@pytest.mark.django_db
def test_readyz_is_503_when_the_broker_is_down_and_says_no_address(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    settings.CELERY_BROKER_URL = "redis://:hunter2@127.0.0.1:1/1"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "fail"
    assert response.json()["checks"]["database"]["status"] == "ok"
    assert b"127.0.0.1" not in response.content and b"hunter2" not in response.content


@pytest.mark.django_db
def test_readyz_is_503_when_fast_state_is_down(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    faststate.reset_client_for_tests()
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["fast_state"]["status"] == "fail"


@pytest.mark.django_db
def test_readyz_is_503_when_the_database_check_fails(monkeypatch):
    def broken():
        raise OSError("connection refused")

    monkeypatch.setitem(probes.CHECKS, "database", broken)
    response = Client().get("/readyz")
    assert response.status_code == 503 and response.json()["checks"]["database"]["status"] == "fail"


# --- /metrics -----------------------------------------------------------------------------------


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)


@pytest.mark.django_db
def test_metrics_in_one_process(settings):
    before = samples(Client().get("/metrics").content.decode())
    metrics.observe_request(
        endpoint="completions",
        model="m-1",
        status=429,
        code="insufficient_quota",
        latency_ms=12,
        ttfb_ms=None,
        tokens=0,
        failed_routers=[],
    )
    metrics.observe_request(
        endpoint="completions",
        model="m-1",
        status=200,
        code="",
        latency_ms=1500,
        ttfb_ms=300,
        tokens=42,
        failed_routers=[77],
    )
    response = Client().get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    after = samples(response.content.decode())

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert (
        delta("portal_gateway_requests_total", model="m-1", status="429", code="insufficient_quota")
        == 1
    )
    assert delta("portal_gateway_requests_total", model="m-1", status="200", code="") == 1
    assert delta("portal_limit_rejections_total", kind="quota") == 1
    assert delta("portal_upstream_errors_total", router="77") == 1
    assert delta("portal_gateway_tokens_total", model="m-1") == 42
    assert delta("portal_gateway_request_duration_seconds_bucket", model="m-1", le="2.5") == 2
    assert delta("portal_gateway_request_duration_seconds_bucket", model="m-1", le="1.0") == 1
    assert value(after, "portal_rollup_lag_seconds") == 0
    assert value(after, "portal_access_paused") == 0


@pytest.mark.django_db
def test_metrics_can_require_a_bearer_token(settings):
    settings.METRICS_BEARER_TOKEN = "scrape-token"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_metrics_add_up_over_several_gateway_processes(simulators, gateway, tmp_path):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(shared)}
    stack = live.start(
        simulators, gateway, plan=seeding.plan("four-rpm", requests_per_minute=4), server_env=env
    )
    other = gateway(**env)
    dead = seeding.catalog(
        router_urls=[dead_url()], model="dead-model", aliases=(), pool="dead-pool"
    )

    def chat(server, model=live.MODEL) -> int:
        return requests.post(
            f"{server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {stack.tenant.secret}"},
            json={"model": model, "messages": [{"role": "user", "content": "count me"}]},
            timeout=30,
        ).status_code

    assert [chat(stack.server), chat(stack.server), chat(other)] == [200, 200, 200]
    assert chat(stack.server, model="dead-model") == 503  # its only router refuses connections
    assert chat(other) == 429  # the fifth request this minute

    scrapes = [
        samples(requests.get(f"{s.url}/metrics", timeout=10).text) for s in (stack.server, other)
    ]
    for found in scrapes:  # either process answers for both
        assert value(found, "portal_gateway_requests_total", model=live.MODEL, status="200") == 3
        assert (
            value(
                found,
                "portal_gateway_requests_total",
                model=live.MODEL,
                status="429",
                code="rate_limit_exceeded",
            )
            == 1
        )
        assert (
            value(
                found,
                "portal_gateway_requests_total",
                model="dead-model",
                status="503",
                code="no_healthy_router",
            )
            == 1
        )
        assert value(found, "portal_limit_rejections_total", kind="rate_limit") == 1
        assert value(found, "portal_upstream_errors_total", router=str(dead.routers[0].pk)) == 1
        assert value(found, "portal_gateway_request_duration_seconds_count") == 5
        assert value(found, "portal_gateway_tokens_total", model=live.MODEL) > 0
        router = str(stack.catalog.routers[0].pk)
        assert value(found, "portal_router_inflight_requests", router=router, pool="e2e-pool") == 0
        assert (
            "portal_router_breaker_open",
            frozenset({("router", router), ("pool", "e2e-pool"), ("name", "router-1")}),
        ) in found
        assert value(found, "portal_rollup_lag_seconds") >= 0
    assert len(list(shared.glob("*.db"))) >= 2  # each process wrote its own file


# --- JSON logs ------------------------------------------------------------------------------------


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("tests.ops.json")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_log_lines_are_json_with_the_request_id_of_the_request_being_served(json_log):
    logger, lines = json_log

    def view(request):
        logger.warning(
            "router answered 502 for org %s",
            "org-1",
            extra={"status_code": 502, "prompt": "my secret plan"},
        )
        from django.http import HttpResponse

        return HttpResponse("ok")

    response = RequestIdMiddleware(view)(RequestFactory().get("/v1/models"))
    logger.info("outside any request")
    inside, outside = lines()
    assert inside["request_id"] == response["x-request-id"]
    assert inside["message"] == "router answered 502 for org org-1"
    assert (inside["level"], inside["logger"], inside["status_code"]) == (
        "WARNING",
        "tests.ops.json",
        502,
    )
    assert "prompt" not in inside and "my secret plan" not in json.dumps(inside)
    assert outside["request_id"] is None and current_request_id.get() is None


def test_log_lines_mask_secrets(json_log):
    logger, lines = json_log
    key = "ctr_live_" + "A1b2" * 10 + "xyz"
    try:
        raise ValueError(
            f"upstream said Authorization: Bearer {key} for postgres://portal:pw123@db/portal"
        )
    except ValueError:
        logger.exception(
            "call failed with api_key=%s token: abc.def", key, extra={"request_id": "req_explicit"}
        )
    (line,) = lines()
    text = json.dumps(line)
    assert key not in text and "pw123" not in text and "abc.def" not in text
    assert line["message"] == "call failed with api_key=*** token: ***"
    assert "Bearer ***" in line["exception"] and "portal:***@db" in line["exception"]
    assert line["request_id"] == "req_explicit"


def test_settings_log_json_unless_debug(settings):
    assert settings.LOG_FORMAT == "json"  # the suite runs with DEBUG off, as production does
    handler = settings.LOGGING["handlers"]["console"]
    assert handler["formatter"] == "json" and handler["filters"] == ["request_id"]


def test_django_request_records_carry_their_requests_id(json_log):
    """Django logs 4xx/5xx answers after the middleware returned; the record holds the request."""
    logger, lines = json_log
    request = RequestFactory().get("/v1/models")
    request.request_id = "req_" + "d" * 24
    logger.warning("Unauthorized: /v1/models", extra={"request": request, "status_code": 401})
    (line,) = lines()
    assert line["request_id"] == "req_" + "d" * 24 and line["status_code"] == 401
    assert "request" not in line
