"""The Django example's virtual-environment variant, Django and mod_wsgi
from PyPI, run with the oldest ansible-core the collection claims
(molecule/django_tests.py): a deploy under load."""

import pytest
from conftest import MOLECULE_DIR
from django_tests import (  # noqa: F401 (pytest collects the imported tests and fixtures)
    deployed,
    django_site,
    installed,
    test_a_deploy_under_load_keeps_every_connection,
)


@pytest.fixture(scope="module")
def django_python() -> str:
    return "/srv/app/venv/bin/python"


@pytest.fixture(scope="module")
def django_ansible() -> str:
    return str(MOLECULE_DIR.parent / ".state/venv-oldest/bin")


@pytest.fixture(scope="module")
def django_browser() -> bool:
    return False
