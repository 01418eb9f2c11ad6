"""The guards the bundled workflows use, registered under their names.

- ``financing_ok``: the co-financing rules of a housing-social plan (DOMAIN.md):
  Landsbyggefonden pays at most 75 % of the total, the local share (municipality
  plus housing organisations) is at least 25 %, the municipality pays no more
  than the housing organisations and no more than it has earmarked, and the
  parts add up to the total. Amounts are whole kroner in ``data["budget"]``.
- ``planned_start_reached``: the step's date is on or after ``data["planned_start"]``.
- ``expiry_passed``: the step's date is after ``data["expires"]``.
- ``proposal_ok``: a proposal names a positive whole ``amount`` in kroner.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .canonical import date_range_problem
from .guards import GuardContext, guard

__all__ = ["financing_problems", "kroner"]

_BUDGET_PARTS = ("total", "lbf", "municipality", "housing", "earmarked")


def kroner(amount: int) -> str:
    """An amount the Danish way: 4000000 -> '4.000.000 kr.'."""
    return f"{amount:,} kr.".replace(",", ".")


def financing_problems(budget: object) -> list[str]:
    """Every way ``budget`` breaks the co-financing rules; [] when it keeps them."""
    if not isinstance(budget, Mapping):
        return ["the case data has no 'budget' object with the amounts "
                f"{', '.join(_BUDGET_PARTS)} (whole kroner)"]
    problems: list[str] = []
    amounts: dict[str, int] = {}
    for part in _BUDGET_PARTS:
        value = budget.get(part)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"budget.{part} must be a whole, non-negative number of kroner, "
                            f"not {value!r}")
        else:
            amounts[part] = value
    if problems:
        return problems
    total, lbf = amounts["total"], amounts["lbf"]
    municipality, housing = amounts["municipality"], amounts["housing"]
    local = municipality + housing
    if lbf + local != total:
        problems.append(f"the parts ({kroner(lbf)} LBF + {kroner(municipality)} municipality + "
                        f"{kroner(housing)} housing organisations = {kroner(lbf + local)}) "
                        f"do not add up to the total {kroner(total)}")
    if lbf * 100 > total * 75:
        problems.append(f"Landsbyggefonden's share {kroner(lbf)} is more than 75 % of "
                        f"the total {kroner(total)}")
    if local * 100 < total * 25:
        problems.append(f"the local co-financing {kroner(local)} is less than 25 % of "
                        f"the total {kroner(total)}")
    if municipality > housing:
        problems.append(f"the municipality's share {kroner(municipality)} is more than the "
                        f"housing organisations' share {kroner(housing)}")
    if municipality > amounts["earmarked"]:
        problems.append(f"the municipality's share {kroner(municipality)} is more than the "
                        f"earmarked {kroner(amounts['earmarked'])}")
    return problems


def _date_in(data: Mapping[str, Any], key: str) -> tuple[dt.date | None, str | None]:
    value = data.get(key)
    if not isinstance(value, str):
        return None, f"the case data has no date {key!r} (write it as 'YYYY-MM-DD')"
    try:
        date = dt.date.fromisoformat(value) if len(value) == 10 else None
    except ValueError:
        date = None
    if date is None:
        return None, f"the case data's {key!r} is {value[:40]!r}, not a date 'YYYY-MM-DD'"
    return (None, problem) if (problem := date_range_problem(date, f"the case data's {key!r}")) \
        else (date, None)


@guard("financing_ok")
def _financing_ok(ctx: GuardContext) -> list[str]:
    return financing_problems(ctx.data.get("budget"))


@guard("planned_start_reached")
def _planned_start_reached(ctx: GuardContext) -> list[str]:
    start, problem = _date_in(ctx.data, "planned_start")
    if problem or start is None:
        return [problem or "no planned start"]
    if ctx.on < start:
        return [f"the planned start {start.isoformat()} has not come yet "
                f"(the step is dated {ctx.on.isoformat()})"]
    return []


@guard("expiry_passed")
def _expiry_passed(ctx: GuardContext) -> list[str]:
    expires, problem = _date_in(ctx.data, "expires")
    if problem or expires is None:
        return [problem or "no expiry date"]
    if ctx.on <= expires:
        return [f"the old plan runs until {expires.isoformat()} "
                f"(the step is dated {ctx.on.isoformat()})"]
    return []


@guard("proposal_ok")
def _proposal_ok(ctx: GuardContext) -> list[str]:
    amount = ctx.data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return [f"the proposal's 'amount' must be a positive whole number of kroner, "
                f"not {amount!r}"]
    return []
