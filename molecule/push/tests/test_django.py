"""The Django example on Debian's python3-django, run with the pinned
ansible-core (molecule/django_tests.py): a deploy under load, and the live
page in Chromium across it."""

import sys
from pathlib import Path

import pytest
from django_tests import (  # noqa: F401 (pytest collects the imported tests and fixtures)
    deployed,
    django_site,
    installed,
    test_a_deploy_under_load_keeps_every_connection,
    test_the_live_page_works_in_a_browser_across_the_deploy,
)


@pytest.fixture(scope="module")
def django_python() -> str:
    return "/usr/bin/python3"


@pytest.fixture(scope="module")
def django_ansible() -> str:
    return str(Path(sys.executable).parent)


@pytest.fixture(scope="module")
def django_browser() -> bool:
    return True
