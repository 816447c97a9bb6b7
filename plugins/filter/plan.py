"""The filter mod_wsgi_ws_sidecar.apache.plan: the role's plan from its
variables (plugins/module_utils/plan.py), called once by tasks/plan.yml."""

from __future__ import annotations

from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.plan import build_plan


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"plan": build_plan}
