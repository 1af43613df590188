"""The hang guard (tests/hang_guard.py) as a pytest plugin: conftest.py loads it, and `-p hang_guard_plugin` elsewhere."""
from __future__ import annotations

import hang_guard


def pytest_configure(config) -> None:
    hang_guard.start(config)


def pytest_runtest_logstart(nodeid, location) -> None:
    hang_guard.test_started(nodeid)


def pytest_runtest_logfinish(nodeid, location) -> None:
    hang_guard.test_finished()
