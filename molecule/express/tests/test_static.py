"""Static and media files Apache serves (molecule/static_tests.py)."""

from static_tests import *  # noqa: F403 (pytest collects the imported tests)
