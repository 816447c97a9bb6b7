"""The deployment every wiring path must match (molecule/shared_tests.py),
here served by mod_wsgi-express from the role's virtual environment."""

import pytest
from shared_tests import *  # noqa: F403 (pytest collects the imported tests)


@pytest.fixture()
def deployment() -> dict:
    return {
        "service": "mod_wsgi_ws_sidecar-express",
        "error_log": "/var/log/mod_wsgi_ws_sidecar/error_log",
        "app_group": "localhost:80",
        "python_prefix": "/opt/mod_wsgi_ws_sidecar/venv",
    }
