"""The sidecar on a unix socket survives faults, again and again: the shared tests
of molecule/fault_tests.py, against this scenario's listener."""

import pytest
from fault_tests import *  # noqa: F403 (pytest collects the imported tests)


@pytest.fixture()
def listener() -> str:
    return "unix:/run/mod_wsgi_ws_sidecar/metrics-sidecar/sidecar.sock"
