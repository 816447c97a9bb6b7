"""The deployment every wiring path must match (molecule/shared_tests.py),
here on system Apache with Debian's python3 and mod_wsgi."""

import pytest
from shared_tests import *  # noqa: F403 (pytest collects the imported tests)


@pytest.fixture()
def front_end_service() -> str:
    return "apache2"


@pytest.fixture()
def error_log() -> str:
    return "/var/log/apache2/error.log"


@pytest.fixture()
def python_prefix() -> str:
    return "/usr"
