import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fleet import Fleet  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # A failing test shows every process's log in its report.
    outcome = yield
    rep = outcome.get_result()
    fleet = item.funcargs.get("fleet") if hasattr(item, "funcargs") else None
    if rep.failed and isinstance(fleet, Fleet):
        rep.sections.append(("process logs", fleet.logs()))


@pytest.fixture(scope="module")
def fleet():
    f = Fleet()
    yield f
    f.stop()
