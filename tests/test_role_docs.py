"""The role's variables are declared once: defaults, argument spec and the
table in docs/variables.md must agree."""

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import variables_table  # noqa: E402
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.plan import (  # noqa: E402
    SIDECAR_DEFAULTS,
    TUNABLES,
)

ROLE = ROOT / "roles/mod_wsgi_ws_sidecar"
PACKAGE_DEFAULTS = ROOT / "files/mod_wsgi_ws_sidecar/defaults.json"
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
SIDECAR_FIELDS = variables_table.spec_options()["mod_wsgi_ws_sidecar_sidecars"]["options"]


def test_every_default_is_in_the_spec_and_back():
    assert set(DEFAULTS) == set(variables_table.spec_options())


def test_spec_defaults_match_defaults_file():
    for name, option in variables_table.spec_options().items():
        assert option.get("default") == DEFAULTS[name], name


def test_sidecar_field_defaults_match_the_plan():
    # The plan fills in missing fields (plugins/module_utils/plan.py), the
    # sidecars' own settings from the package's defaults.json, the one source
    # the sidecars read too; the spec documents them.
    package_defaults = json.loads(PACKAGE_DEFAULTS.read_text())
    defaults = {**SIDECAR_DEFAULTS, **{key: package_defaults[key] for key in TUNABLES}}
    assert set(defaults) == set(SIDECAR_FIELDS) - {"name"}
    for field, default in defaults.items():
        assert SIDECAR_FIELDS[field].get("default") == default, field
    # A sidecar's max_clients is the role's capacity unless set; alone, it is the same.
    assert package_defaults["max_clients"] == DEFAULTS["mod_wsgi_ws_sidecar_capacity_websockets"]
    assert SIDECAR_FIELDS["name"]["required"] is True


def test_every_sidecar_field_is_described():
    for field, option in SIDECAR_FIELDS.items():
        assert option.get("description"), field
        assert option.get("type"), field


def test_every_variable_is_prefixed_and_described():
    for name, option in variables_table.spec_options().items():
        assert name.startswith("mod_wsgi_ws_sidecar_"), name
        assert option.get("description"), name
        assert option.get("type"), name


def test_variables_page_table_is_current():
    page = variables_table.PAGE.read_text()
    assert variables_table.page_table(page) == variables_table.render(), (
        "docs/variables.md's table is stale: run python scripts/variables_table.py --write"
    )


def test_the_readme_links_the_variables_page_and_holds_no_copy_of_the_table():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/variables.md)" in readme
    assert variables_table.START not in readme and variables_table.END not in readme
