"""Which models a plan is entitled to: the one rule the gateway's admission, `/v1/models`
and the dashboard's catalog all answer with."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.models import Plan


@dataclass(frozen=True, slots=True)
class PlanEntitlement:
    """Every model (`all_models`), or only the canonical names in `models`."""

    all_models: bool
    models: frozenset[str] = frozenset()

    @classmethod
    def of(cls, plan: Plan) -> PlanEntitlement:
        if plan.all_models:
            return cls(all_models=True)
        return cls(all_models=False, models=plan_model_names(plan=plan))

    def allows(self, model_name: str) -> bool:
        return self.all_models or model_name in self.models


def plan_model_names(*, plan: Plan) -> frozenset[str]:
    return frozenset(plan.model_policies.values_list("model_name", flat=True))
