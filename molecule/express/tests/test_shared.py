"""The deployment every wiring path must match (molecule/shared_tests.py),
here served by mod_wsgi-express from the role's virtual environment."""

import pytest
from shared_tests import *  # noqa: F403 (pytest collects the imported tests)


@pytest.fixture()
def front_end_service() -> str:
    return "mod_wsgi_ws_sidecar-express"


@pytest.fixture()
def error_log() -> str:
    return "/var/log/mod_wsgi_ws_sidecar/error_log"


@pytest.fixture()
def python_prefix() -> str:
    return "/opt/mod_wsgi_ws_sidecar/venv"
