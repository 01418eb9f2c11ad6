"""Small shared fixtures: a real SQLite file per test, the bundled workflows, the seed's data."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings

import approvalflow as af
from approvalflow.demo import SEED_DATA

FLAGSHIP = "boligsocial-helhedsplan"

# No timing in tests: these machines are shared and noisy, so Hypothesis' per-example
# deadline is off. Under CI the examples are derived from each test, not drawn at random,
# so a run on CI is the run that was made before submitting; random exploration happens
# on developers' machines (and with --hypothesis-seed).
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("dev"), derandomize=True,
                          database=None, print_blob=True)
# The "mutation" profile is the CI one without shrinking: tests/mutation_check.py runs the
# suite against planted bugs and only needs to know which tests fail, not the smallest example.
settings.register_profile("mutation", parent=settings.get_profile("ci"),
                          phases=[Phase.explicit, Phase.reuse, Phase.generate])


def ci_requested(value: str | None) -> bool:
    """CI=true (or any value but empty, "false" or "0") selects the CI profile."""
    return (value or "").strip().lower() not in ("", "false", "0")


settings.load_profile(os.environ.get("APPROVALFLOW_HYPOTHESIS_PROFILE")
                      or ("ci" if ci_requested(os.environ.get("CI")) else "dev"))


BACKENDS = ("sqlite", "postgres")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends: run the test's store on SQLite and on "
                            "PostgreSQL (a parameter 'backend')")
    config.addinivalue_line("markers", "sqlite_only: in a module marked backends, a test "
                            "of something only SQLite has (its file, its pragmas)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``backends`` runs once per backend; others on SQLite alone."""
    definition = metafunc.definition
    if "backend" in metafunc.fixturenames and definition.get_closest_marker("backends") \
            and not definition.get_closest_marker("sqlite_only"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture(scope="session")
def pg_server():
    """A throwaway PostgreSQL (tests/pgserver.py), or $APPROVALFLOW_TEST_PG_URL's server.

    Without one the PostgreSQL tests skip, saying why; under CI they fail instead."""
    from tests.pgserver import ENV_URL, Server

    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed (pip install 'approvalflow[postgres]')"
        server = None
    else:
        reason = ""
        server = None
        if os.environ.get(ENV_URL):
            server = Server(os.environ[ENV_URL])
        else:
            try:
                server = Server.start()
            except RuntimeError as e:
                reason = str(e)
    if server is None:
        if ci_requested(os.environ.get("CI")):
            pytest.fail(f"CI runs the PostgreSQL tests, but: {reason}.")
        pytest.skip(f"no PostgreSQL server: {reason}")
    yield server
    server.stop()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "cases.db"


@pytest.fixture
def store_url(backend: str, db_path: Path, request: pytest.FixtureRequest):
    """Where the test's store lives: a SQLite file, or a fresh schema on PostgreSQL."""
    if backend == "sqlite":
        yield str(db_path)
        return
    server = request.getfixturevalue("pg_server")
    url = server.fresh_url()
    yield url
    server.drop(url)


@pytest.fixture
def store(store_url: str):
    with af.open_store(store_url) as s:
        yield s


@pytest.fixture(scope="session")
def flagship() -> af.Workflow:
    return af.load_workflow(FLAGSHIP)


@pytest.fixture
def seed_data() -> dict[str, Any]:
    return copy.deepcopy(SEED_DATA)


@pytest.fixture
def submitted(store, flagship, seed_data):
    """A fictional flagship case (invented dates), submitted on 2021-11-01: all pending."""
    case = store.create_case(flagship, "example-plan", actor="tmf", on="2021-11-01",
                             data=seed_data)
    case.fire("submit", actor="tmf", on="2021-11-01")
    return case


def approve_all(case: af.Case, on: str = "2022-01-31") -> None:
    """Every party of the approval stage says yes (TMU, AAB, 3B, the four VIBO departments)."""
    case.fire("tmu.approve", actor="tmu", on=on)
    case.fire("aab.approve", actor="aab", on=on)
    case.fire("3b.approve", actor="3b", on=on)
    for n in range(1, 5):
        case.fire("vibo.approve", actor=f"vibo_afd_{n}", on=on)
