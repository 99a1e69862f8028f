"""Unkey keys on live gateway processes (fake Unkey over HTTP): the Portal's own revocation
and the fail-open memory hold across processes, because both live in Redis."""

from __future__ import annotations

import pytest
import requests
from django.utils import timezone

from apikeys import unkey
from apikeys.services import api_key_revoke
from tests.factories import seeding
from tests.support.errors import assert_stable_error
from tests.support.unkey_fake import use_unkey

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

MESSAGES = [{"role": "user", "content": "Still me?"}]


@pytest.fixture
def fake(unkey_server, settings):
    unkey_server.fake.reset()
    use_unkey(settings, base_url=unkey_server.url)
    return unkey_server.fake


def chat(server, secret: str) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/chat/completions",
        json={"model": seeding.MODEL, "messages": MESSAGES, "max_tokens": 4},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )


def test_a_revoked_key_is_refused_by_every_process_while_unkey_still_says_valid(
    fake, simulators, gateway
):
    (router,) = simulators(1)
    one, two = gateway(), gateway()
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()
    assert [chat(one, tenant.secret).status_code, chat(two, tenant.secret).status_code] == [
        200,
        200,
    ]
    fake.lagging = True  # Unkey's edges have not heard yet

    api_key_revoke(key=tenant.key, actor=None, now=timezone.now())

    assert unkey.verify_key(tenant.secret, cost=0).code == "VALID"
    for response in (chat(two, tenant.secret), chat(one, tenant.secret)):
        assert response.status_code == 401
        assert_stable_error(response.json(), code="api_key_revoked")
    assert router.completions() == 2


def test_fail_open_remembers_a_verification_for_every_process(fake, settings, simulators, gateway):
    settings.UNKEY_FAILURE_MODE = "open"
    (router,) = simulators(1)
    one, two = gateway(), gateway(UNKEY_TIMEOUT_MS="300")
    seeding.catalog(router_urls=[router.url])
    tenant = seeding.tenant()
    other = seeding.tenant("other@example.com")
    assert chat(one, tenant.secret).status_code == 200  # verified by Unkey on process one

    fake.outage, fake.outage_seconds = "timeout", 2.0
    admitted = chat(two, tenant.secret)
    refused = chat(two, other.secret)

    assert admitted.status_code == 200, admitted.text
    assert refused.status_code == 503
    assert_stable_error(refused.json(), code="key_service_unavailable")
