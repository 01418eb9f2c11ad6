"""The test suite's own set-up: which Hypothesis profile runs, and that the mutation check
(tests/mutation_check.py) still plants every one of its bugs in the current source."""

from __future__ import annotations

import pytest

from tests import mutation_check
from tests.conftest import ci_requested


@pytest.mark.parametrize(("value", "ci"), [
    (None, False), ("", False), ("false", False), ("False", False), ("0", False),
    (" false ", False), ("true", True), ("1", True), ("yes", True), ("TRUE", True)])
def test_only_a_true_ci_variable_selects_the_ci_profile(value: str | None, ci: bool) -> None:
    """CI=true (or any value but empty, false or 0) selects the CI profile; CI=false not."""
    assert ci_requested(value) is ci


def test_every_planted_bug_still_matches_the_source() -> None:
    """Each bug of the mutation check is one text that occurs exactly once in its file."""
    assert mutation_check.check_all_plantable() == []
    assert len(mutation_check.MUTANTS) == 13
    assert len({m.name for m in mutation_check.MUTANTS}) == 13
