"""The role's variables are declared once: defaults, argument spec and the
README table must agree."""

import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import variables_table  # noqa: E402
from ansible_collections.mod_wsgi_ws_sidecar.apache.plugins.module_utils.plan import (  # noqa: E402
    SIDECAR_DEFAULTS,
)

ROLE = ROOT / "roles/mod_wsgi_ws_sidecar"
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
SIDECAR_FIELDS = variables_table.spec_options()["mod_wsgi_ws_sidecar_sidecars"]["options"]


def test_every_default_is_in_the_spec_and_back():
    assert set(DEFAULTS) == set(variables_table.spec_options())


def test_spec_defaults_match_defaults_file():
    for name, option in variables_table.spec_options().items():
        assert option.get("default") == DEFAULTS[name], name


def test_sidecar_field_defaults_match_the_plan():
    # The plan fills in missing fields (plugins/module_utils/plan.py); the spec documents them.
    assert set(SIDECAR_DEFAULTS) == set(SIDECAR_FIELDS) - {"name"}
    for field, default in SIDECAR_DEFAULTS.items():
        assert SIDECAR_FIELDS[field].get("default") == default, field
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


def test_readme_table_is_current():
    readme = (ROOT / "README.md").read_text()
    assert variables_table.readme_table(readme) == variables_table.render(), (
        "README variables table is stale: run python scripts/variables_table.py --write"
    )
