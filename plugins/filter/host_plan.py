"""The filter mod_wsgi_ws_sidecar.apache.host_plan: what the role makes of
what plugins/modules/host_facts.py saw (plugins/module_utils/host_rules.py),
called once by tasks/host_checks.yml."""

from __future__ import annotations

from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.host_rules import (
    host_plan,
    port_problems,
)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"host_plan": host_plan, "port_problems": port_problems}
