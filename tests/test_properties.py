"""Property tests: random actors firing random triggers on every bundled workflow, on a real file.

After every step: only a defined transition has happened, a refused trigger changed
nothing, replaying the file gives the same state, the current-state table equals the
replay, a final state is never left, and one party's step never moves another region.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import approvalflow as af
from approvalflow.demo import SEED_DATA
from approvalflow.engine import engine_for

START = dt.date(2021, 11, 1)
BROKEN_BUDGET = {"budget": {"total": 4_000_000, "lbf": 3_900_000, "municipality": 100_000,
                            "housing": 0, "earmarked": 0}}
CREATION_DATA = {
    "boligsocial-helhedsplan": SEED_DATA,
    "medfinansiering-restbeloeb": {"amount": 600_000},
}


def region_of(wf: af.Workflow, state: str) -> str | None:
    """The parallel region (child of a parallel state) containing ``state``, if any."""
    for anc in [state, *wf.ancestors(state)]:
        parent = wf.state_defs[anc].parent
        if parent is not None and wf.state_defs[parent].kind == "parallel":
            return anc
    return None


def machine_for(name: str) -> type[RuleBasedStateMachine]:
    wf = af.load_workflow(name)
    triggers = sorted(wf.triggers)
    # the clock takes the timed steps (on their date), so it is among who may act
    actors = sorted(wf.actors) + (["clock"] if wf.timed_transitions else [])

    class CaseMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.dir = Path(tempfile.mkdtemp(prefix="af-prop-"))
            self.path = self.dir / "cases.db"
            self.store = af.open_store(self.path, durability="normal")
            data = copy.deepcopy(CREATION_DATA.get(name, {}))
            self.case = self.store.create_case(wf, "c", actor=sorted(wf.actors)[0] if
                                               "tmf" not in wf.actors else "tmf",
                                               on=START, data=data)
            self.day = START
            self.was_final = False

        def teardown(self) -> None:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)

        @rule(trigger=st.sampled_from(triggers), actor=st.sampled_from(actors),
              step=st.integers(min_value=-3, max_value=45),
              broken=st.booleans())
        def fire(self, trigger: str, actor: str, step: int, broken: bool) -> None:
            on = self.day + dt.timedelta(days=step)
            data = BROKEN_BUDGET if broken and "budget" in self.case.data else None
            self.attempt(trigger, actor, on, data)

        @rule(pick=st.integers(min_value=0, max_value=10_000),
              step=st.integers(min_value=0, max_value=45))
        def advance(self, pick: int, step: int) -> None:
            """Take one of the steps allowed now (random steps are mostly refused)."""
            on = self.day + dt.timedelta(days=step)
            options = self.case.allowed(on=on)
            if not options:
                return
            trigger = options[pick % len(options)]
            candidates = [a for a in actors if self.case.why_not(trigger, actor=a, on=on) == []]
            assert candidates, trigger
            self.attempt(trigger, candidates[pick % len(candidates)], on, None)

        def attempt(self, trigger: str, actor: str, on: dt.date, data: dict | None) -> None:
            before_state, before_version = self.case.state, self.case.version
            before_head = self.store.heads()["c"]
            reasons = self.case.why_not(trigger, actor=actor, on=on, data=data)
            allowed = trigger in self.case.allowed(actor=actor, on=on) if data is None else None
            if allowed is not None:
                assert allowed == (reasons == [])
            if reasons:
                with pytest.raises(af.TransitionRefusedError) as info:
                    self.case.fire(trigger, actor=actor, on=on, data=data)
                assert info.value.reasons == reasons
                assert self.case.state == before_state
                assert self.case.version == before_version
                assert self.store.heads()["c"] == before_head
                return
            event = self.case.fire(trigger, actor=actor, on=on, data=data)
            self.day = on
            engine = engine_for(wf)
            t = engine.enabled_transition(before_state, trigger)
            assert t is not None and actor in t.actors
            assert event.source == before_state and event.target == self.case.state
            if event.moved:
                assert event.target == engine.step(before_state, trigger)
            else:
                assert t.vote is not None  # only a ballot may leave the state as it was
            changed = (event.source ^ event.target)
            own = region_of(wf, t.source)
            if own is not None and region_of(wf, t.target) == own:
                # every changed state lies in that region (regions may nest)
                assert all(own in (s, *wf.ancestors(s)) for s in changed), (trigger, changed)

        @rule()
        def reopen(self) -> None:
            state, version = self.case.state, self.case.version
            self.store.close()
            self.store = af.open_store(self.path, durability="normal")
            self.case = self.store.case("c")
            assert self.case.state == state and self.case.version == version

        @precondition(lambda self: self.case.version > 1)
        @rule(back=st.integers(min_value=0, max_value=60))
        def time_travel(self, back: int) -> None:
            when = self.day - dt.timedelta(days=back)
            events = [e for e in self.case.history if e.on <= when]
            if not events:
                with pytest.raises(af.CaseNotFoundError):
                    self.store.case("c", as_of=when)
                return
            view = self.store.case("c", as_of=when)
            assert view.version == events[-1].seq
            assert view.state == events[-1].target

        @invariant()
        def log_and_table_agree(self) -> None:
            [summary] = self.store.cases()
            assert summary.state == self.case.state
            assert summary.version == self.case.version
            replayed = self.store.case("c")
            assert replayed.state == self.case.state
            assert dict(replayed.data) == dict(self.case.data)

        @invariant()
        def final_is_never_left(self) -> None:
            if self.was_final:
                assert self.case.is_final
                assert self.case.allowed() == []
            self.was_final = self.case.is_final

    CaseMachine.__name__ = f"CaseMachine_{name.replace('-', '_')}"
    return CaseMachine


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_only_valid_transitions_happen(name: str) -> None:
    """Random steps on a bundled workflow keep every invariant of the log and the statechart."""
    machine = machine_for(name)
    machine.TestCase.settings = settings(max_examples=60, stateful_step_count=60, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
    machine.TestCase("runTest").runTest()


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_verify_after_random_runs(name: str, tmp_path: Path) -> None:
    """A log written by a long random run verifies clean, including the replay of each step."""
    wf = af.load_workflow(name)
    engine = engine_for(wf)
    with af.open_store(tmp_path / "v.db", durability="normal") as store:
        rng = __import__("random").Random(7)
        for n in range(20):
            case = store.create_case(wf, f"c{n}", actor="tmf", on=START,
                                     data=copy.deepcopy(CREATION_DATA.get(name, {})))
            day = START
            for _ in range(60):
                options = case.allowed(on=day)
                if not options:
                    break
                trigger = rng.choice(options)
                t = engine.enabled_transition(case.state, trigger)
                assert t is not None
                actor = next(a for a in t.actors
                             if case.why_not(trigger, actor=a, on=day) == [])
                case.fire(trigger, actor=actor, on=day)
                day += dt.timedelta(days=rng.randint(0, 20))
        report = store.verify()
        assert report.ok, report.problems
        assert report.cases == 20
