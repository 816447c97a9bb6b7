"""The Django example on Debian's python3-django (molecule/django_tests.py):
the live page in Chromium across a deploy under load."""

import sys
from pathlib import Path

import pytest
from django_tests import (  # noqa: F401 (pytest collects the imported tests and fixtures)
    django_site,
    installed,
    test_the_live_page_works_in_a_browser_across_a_deploy,
)


@pytest.fixture(scope="module")
def django_python() -> str:
    return "/usr/bin/python3"


@pytest.fixture(scope="module")
def django_ansible() -> str:
    """The pinned ansible-core runs the example."""
    return str(Path(sys.executable).parent)
