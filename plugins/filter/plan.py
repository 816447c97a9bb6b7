"""The filter mod_wsgi_ws_sidecar.apache.plan: the role's plan from its
variables (plugins/module_utils/plan.py), called once by tasks/plan.yml.

What the plan needs from the controller's disk is read here: the
sidecars' defaults (the package's defaults.json, which the sidecars read
too), and whether every file of the package the plan lists is there."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.kinds import (
    package_files,
)
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.plan import build_plan


def missing_files(package_src: str) -> dict[str, Any] | None:
    """A plan that only says the package is incomplete, or None."""
    missing = [
        name for name in package_files(set()) if not os.path.isfile(os.path.join(package_src, name))
    ]
    if not missing:
        return None
    return {
        "problems": [
            f"Files of the package the role installs are missing on the controller, in"
            f" {package_src}: {', '.join(missing)}. Install the collection, not the role"
            f" alone (see the README's Install section)."
        ]
    }


def plan(variables: Mapping[str, Any], constants: Mapping[str, Any]) -> dict[str, Any]:
    src = constants["package_src"]
    incomplete = missing_files(src)
    if incomplete is not None:
        return incomplete
    with open(os.path.join(src, "defaults.json"), encoding="utf-8") as fh:
        defaults = json.load(fh)
    return build_plan(variables, {**constants, "sidecar_defaults": defaults})


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"plan": plan}
