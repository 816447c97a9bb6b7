"""The deployment every wiring path must match (molecule/shared_tests.py),
here on system Apache with Debian's python3 and mod_wsgi."""

import pytest
from shared_tests import *  # noqa: F403 (pytest collects the imported tests)
from shared_tests import ON_SYSTEM_APACHE


@pytest.fixture()
def deployment() -> dict:
    return {**ON_SYSTEM_APACHE, "python_prefix": "/usr"}
