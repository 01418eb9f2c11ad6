"""The guard of tests/fixtures/research-grant.toml: a module, as an application keeps one.

Imported by the tests (and given to the command line with ``--guards tests.grant_guards``).
"""

from __future__ import annotations

import approvalflow as af

#: The most the finance office may approve without a board (in whole kroner).
LIMIT = 1_000_000


@af.guard("grant_budget_ok")
def grant_budget_ok(ctx: af.GuardContext) -> list[str]:
    """The budget is given and within the limit."""
    budget = ctx.data.get("budget")
    if not isinstance(budget, int):
        return ["the case has no budget (data 'budget', whole kroner)"]
    if budget > LIMIT:
        return [f"the budget {budget} is over the finance office's limit {LIMIT}"]
    return []
