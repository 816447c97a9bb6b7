"""The sidecar on loopback TCP survives faults, again and again: the shared tests
of molecule/fault_tests.py, against this scenario's listener."""

import pytest
from fault_tests import *  # noqa: F403 (pytest collects the imported tests)


@pytest.fixture()
def listener() -> str:
    return "tcp:8765"
