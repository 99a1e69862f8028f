"""Account states set by staff in the admin of this process, observed on the next request by
two gateway processes (gunicorn on the same database and fast state) that had both cached
the key's auth context: an organization disabled answers 403 `account_disabled` in both
while its dashboard stays readable, and is served again once enabled; a disabled user's
dashboard token is refused on the next request."""

from __future__ import annotations

import dataclasses

import openai
import pytest
import requests

from accounts.models import AuditEvent
from accounts.signing import mint_dev_token
from tests.support import live
from tests.support.errors import assert_stable_error

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# Long cache lifetimes: only the generation tokens can make the change visible in time.
NO_CACHE_EXPIRY = {"AUTH_CONTEXT_TTL_SECONDS": "3600", "CATALOG_MAX_AGE_SECONDS": "3600"}


def dashboard(server, token: str, path: str) -> requests.Response:
    return requests.get(
        f"{server.url}/api/v1{path}", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )


def test_an_org_disabled_in_the_admin_is_refused_by_every_process(
    simulators, gateway, staff_client
):
    first = live.start(simulators, gateway, server_env=NO_CACHE_EXPIRY)
    second = dataclasses.replace(first, server=gateway(**NO_CACHE_EXPIRY))
    org = first.tenant.org
    token = mint_dev_token(subject=f"dev|{first.tenant.user.email}")
    assert first.code() == (200, "") and second.code() == (200, "")  # both cached the key

    staff_client.action("accounts.organization", "disable_orgs", [org], reason="abuse #7")

    for stack in (first, second):
        response = stack.chat()
        assert_stable_error(response, status=403, code="account_disabled", type_="permission_error")
    sdk = openai.OpenAI(
        base_url=f"{second.server.url}/v1", api_key=first.tenant.secret, max_retries=0
    )
    with pytest.raises(openai.PermissionDeniedError) as refused:  # what the official SDK raises
        sdk.chat.completions.create(model=live.MODEL, messages=[{"role": "user", "content": "hi"}])
    assert (refused.value.status_code, refused.value.code) == (403, "account_disabled")
    # The dashboard still reads: the org (as disabled), its keys, its usage.
    orgs = dashboard(second.server, token, "/orgs")
    assert orgs.status_code == 200, orgs.text
    (listed,) = [o for o in orgs.json()["results"] if o["id"] == str(org.pk)]
    assert listed["status"] == "disabled"
    for path in [f"/orgs/{org.pk}/keys", f"/orgs/{org.pk}/usage"]:
        assert dashboard(first.server, token, path).status_code == 200, path

    staff_client.action("accounts.organization", "enable_orgs", [org], reason="appeal accepted")
    assert first.code() == (200, "") and second.code() == (200, "")
    assert list(
        AuditEvent.objects.filter(target_type="organization", actor_type="staff")
        .order_by("id")
        .values_list("action", "reason", "actor_label", "before", "after")
    ) == [
        ("org.disable", "abuse #7", "ops-staff", {"status": "active"}, {"status": "disabled"}),
        (
            "org.enable",
            "appeal accepted",
            "ops-staff",
            {"status": "disabled"},
            {"status": "active"},
        ),
    ]


def test_a_disabled_users_dashboard_token_is_refused_on_the_next_request(
    simulators, gateway, staff_client
):
    stack = live.start(simulators, gateway)
    user = stack.tenant.user
    token = mint_dev_token(subject=f"dev|{user.email}")
    assert dashboard(stack.server, token, "/me").status_code == 200

    staff_client.action("accounts.user", "disable_users", [user], reason="card fraud")
    response = dashboard(stack.server, token, "/me")
    assert_stable_error(response, status=403, code="user_disabled", type_="permission_error")
    # ...and so is the key the user created (accounts.privileges' rule).
    assert stack.code() == (403, "api_key_disabled")

    staff_client.action("accounts.user", "enable_users", [user], reason="cleared")
    assert dashboard(stack.server, token, "/me").status_code == 200
    assert stack.code() == (200, "")
