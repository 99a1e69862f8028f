"""A gateway process in front of simulated routers, with one tenant and its key."""

from __future__ import annotations

from dataclasses import dataclass

import requests

from tests.factories import seeding
from tests.support.processes import GatewayServer, Simulator

MODEL = seeding.MODEL


@dataclass
class Stack:
    server: GatewayServer
    sims: list[Simulator]
    catalog: seeding.Catalog
    tenant: seeding.Tenant

    def chat(
        self, *, key: str | None = None, model: str = MODEL, stream: bool = False, **kwargs
    ) -> requests.Response:
        return requests.post(
            f"{self.server.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {key or self.tenant.secret}"},
            json={
                "model": model,
                "messages": [{"role": "user", "content": "hello ops"}],
                "stream": stream,
            },
            timeout=30,
            stream=stream,
            **kwargs,
        )

    def code(self, **kwargs) -> tuple[int, str]:
        """(HTTP status, error code or "") of one chat request."""
        response = self.chat(**kwargs)
        if response.status_code == 200:
            return 200, ""
        return response.status_code, response.json()["error"]["code"]


def start(
    simulators, gateway, *, routers: int = 1, plan=None, server_env: dict | None = None, **sim_knobs
) -> Stack:
    sims = simulators(routers, **sim_knobs)
    server = gateway(**(server_env or {}))  # boots while the data is seeded
    catalog = seeding.catalog(router_urls=[sim.url for sim in sims])
    tenant = seeding.tenant("ops-live@example.com", on_plan=plan)
    return Stack(server=server, sims=sims, catalog=catalog, tenant=tenant)
