"""The push channel end to end on each web host of the fleet, whose Redis is
on a host of its own: every test of molecule/push_tests.py."""

from push_tests import *  # noqa: F403 (pytest collects the imported tests)

testinfra_hosts = ["ansible://webservers"]
