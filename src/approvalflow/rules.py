"""The guards the bundled workflows use, registered under their names.

Every amount is a whole number of Danish kroner (``int``; 4.0 mio. kr. is ``4_000_000``).
Anything else (a float, a string, a bool, a negative number) is refused with the value.

- ``financing_ok``: the co-financing rules of a housing-social plan (the seed, DOMAIN.md):
  Landsbyggefonden pays at most 75 % of the total, the local share (municipality
  plus housing organisations) is at least 25 %, the municipality pays at most 12.5 %
  of the total (the main agreement with BL, BR 11 December 2014), no more than the
  housing organisations (BR 8 October 2020) and no more than it has earmarked (Budget
  2021), and the parts add up to the total. Amounts are in ``data["budget"]``.
- ``planned_start_reached``: the step's date is on or after ``data["planned_start"]``.
- ``expiry_reached``: the step's date is on or after ``data["expires"]`` (the day the
  old plan expires).
- ``expiry_passed``: the step's date is after ``data["expires"]`` (kept for workflows
  stored with it).
- ``proposal_ok``: a proposal names a positive whole ``amount`` in kroner, at most what
  is left of the earmark: ``data["earmarked"] - data["used"]``; when the case data does
  not give them, the seed's figures (1.1 mio. kr. earmarked, 0.5 mio. kr. used: at most
  0.6 mio. kr.).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .canonical import date_range_problem
from .guards import GuardContext, guard

__all__ = ["financing_problems", "kroner", "remainder_problems", "MUNICIPAL_SHARE_PERMILLE",
           "SEED_EARMARKED", "SEED_USED"]

#: Copenhagen co-finances 12.5 % of a plan's total budget (main agreement with BL, BR
#: 11 December 2014): 125 per mille, kept whole so the check is exact.
MUNICIPAL_SHARE_PERMILLE = 125
#: The seed's figures for Mimerskvarteret: 1.1 mio. kr. earmarked, 0.5 mio. kr. used.
SEED_EARMARKED = 1_100_000
SEED_USED = 500_000

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
    if municipality * 1000 > total * MUNICIPAL_SHARE_PERMILLE:
        problems.append(f"the municipality's share {kroner(municipality)} is more than 12.5 % "
                        f"of the total {kroner(total)} (at most "
                        f"{kroner(total * MUNICIPAL_SHARE_PERMILLE // 1000)})")
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


@guard("expiry_reached")
def _expiry_reached(ctx: GuardContext) -> list[str]:
    expires, problem = _date_in(ctx.data, "expires")
    if problem or expires is None:
        return [problem or "no expiry date"]
    if ctx.on < expires:
        return [f"the old plan expires on {expires.isoformat()} "
                f"(the step is dated {ctx.on.isoformat()})"]
    return []


def _whole_kroner(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def remainder_problems(data: Mapping[str, Any]) -> list[str]:
    """Every way a proposal for the remaining co-financing breaks the rules; [] if none."""
    amount = data.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        return [f"the proposal's 'amount' must be a positive whole number of kroner, "
                f"not {amount!r}"]
    earmarked, used = data.get("earmarked", SEED_EARMARKED), data.get("used", SEED_USED)
    wrong = [f"{name!r} must be a whole, non-negative number of kroner, not {value!r}"
             for name, value in (("earmarked", earmarked), ("used", used))
             if not _whole_kroner(value)]
    if wrong:
        return wrong
    assert isinstance(earmarked, int) and isinstance(used, int)
    left = earmarked - used
    if amount > left:
        return [f"the proposal's amount {kroner(amount)} is more than what is left of the "
                f"earmark: {kroner(earmarked)} earmarked - {kroner(used)} used = {kroner(left)}"]
    return []


@guard("proposal_ok")
def _proposal_ok(ctx: GuardContext) -> list[str]:
    return remainder_problems(ctx.data)
