"""Hostile and bad input: workflow files, ids, notes and data that try to break things.

A workflow either loads as a sound, drivable workflow or raises DefinitionError,
never another exception and never a hang (each input runs under an alarm). Values
passed to the store are stored verbatim or refused with InvalidInputError, and a
refused step leaves the store exactly as it was. The store's tests run on SQLite and on
PostgreSQL, whose text can't hold the character U+0000: there a value holding it is
refused with one StoreError that says so, and nothing is stored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import approvalflow as af
from approvalflow.loading import bundled_workflow_path
from tests import rawdb
from tests.figures import figures  # noqa: F401  (the fixture)
from tests.strategies import (
    SQL,
    broken_workflows,
    byte_mutations,
    hostile_text,
    ids,
    json_values,
    sound_workflows,
    to_toml,
)

pytestmark = pytest.mark.backends

HANG = 20  # seconds one input may take before it counts as a hang
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class Hang(Exception):
    """An input took longer than HANG seconds."""


@contextlib.contextmanager
def no_hang() -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer after {HANG} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _drive(wf: af.Workflow, steps: int = 12) -> None:
    """A loaded workflow is sound: a case starts and can be walked along allowed steps."""
    with af.open_store(":memory:") as store:
        actor = sorted(wf.actors)[0]
        # a workflow may say which data a case starts with (creation_sets)
        data = {"amount": 5} if wf.creation_sets is None or "amount" in wf.creation_sets \
            else {}
        case = store.create_case(wf, "c", actor=actor, on="2022-01-01", data=data)
        for _ in range(steps):
            options = [(a, t) for a, ts in sorted(case.awaiting(on="2022-01-02").items())
                       for t in ts]
            if not options:
                # a sound workflow never strands a case: nothing left to do means it ended
                assert case.is_final, (case, case.ballots(), case.withdrawn())
                break
            actor, trigger = options[len(case.history) % len(options)]
            case.fire(trigger, actor=actor, on="2022-01-02")
        assert store.verify().ok


def _load_or_refuse(text: str) -> af.Workflow | None:
    """Load ``text``; a DefinitionError is a refusal, any other exception fails the test."""
    with no_hang():
        try:
            wf = af.loads_workflow(text, source="<fuzz>")
        except af.DefinitionError as e:
            assert str(e).startswith("<fuzz>:"), e
            return None
        _drive(wf)
        return wf


# -- workflow documents ---------------------------------------------------------------------


def test_sound_generated_workflows_load_and_run(figures):  # noqa: F811
    """Every generated sound document loads and a case can be walked through it."""
    tried = []

    @FUZZ
    @given(sound_workflows())
    def check(doc: dict[str, Any]) -> None:
        tried.append(1)
        assert _load_or_refuse(to_toml(doc)) is not None, to_toml(doc)

    check()
    figures("fuzz_sound_documents", len(tried), "generated sound workflow documents, "
            "each loaded and driven")


def test_broken_generated_workflows_load_or_raise_definition_error(figures):  # noqa: F811
    """Mutated documents either load as a drivable workflow or raise DefinitionError."""
    tried, refused = [], []

    @FUZZ
    @given(broken_workflows())
    def check(doc: dict[str, Any]) -> None:
        tried.append(1)
        if _load_or_refuse(to_toml(doc)) is None:
            refused.append(1)

    check()
    assert refused, "no mutation was refused: the strategy is not breaking anything"
    figures("fuzz_broken_documents", len(tried), "mutated workflow documents (a key "
            "removed, a value of another type, a reference renamed, ...)")
    figures("fuzz_broken_documents_refused", len(refused),
            "of them refused with DefinitionError (the rest still loaded and ran)")


def test_arbitrary_text_is_refused_with_definition_error(figures):  # noqa: F811
    """Text that is not a workflow raises DefinitionError, whatever it holds."""
    tried = []

    @FUZZ
    @given(st.one_of(st.text(), st.text(st.sampled_from("[]{}=\"'.,#\n\\ abc123_-"))))
    def check(text: str) -> None:
        tried.append(1)
        assert _load_or_refuse(text) is None

    check()
    figures("fuzz_text_documents", len(tried), "arbitrary texts given as workflow files")


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_byte_mutations_of_bundled_files(name, tmp_path, figures):  # noqa: F811
    """A bundled file with bytes flipped, cut or inserted loads or raises DefinitionError."""
    original = bundled_workflow_path(name).read_bytes()
    target = tmp_path / f"{name}.toml"
    tried = []

    @FUZZ
    @given(byte_mutations(original))
    def check(data: bytes) -> None:
        tried.append(1)
        target.write_bytes(data)
        with no_hang():
            try:
                wf = af.load_workflow(target)
            except af.DefinitionError as e:
                assert str(e).startswith(str(target)), e
                return
            _drive(wf)

    check()
    figures(f"fuzz_bytes_{name}", len(tried), f"byte-level mutations of workflows/{name}.toml")


def test_absurd_nesting_is_refused(tmp_path):
    """Deeply nested arrays or tables and a huge file are refused, not crashed on."""
    for text in ["x = " + "[" * 100_000 + "]" * 100_000, "a = 1\n" + "[a" + ".a" * 5000 + "]"]:
        assert _load_or_refuse(text) is None
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * 2_000_000)
    with pytest.raises(af.DefinitionError, match="at most"):
        af.load_workflow(big)


def _largest_workflows() -> dict[str, str]:
    """Sound files of about 1 MB (the largest a file may be): a chain of 10,000 states, and
    one trigger leaving 5,200 states of a compound (a withdrawal from anywhere)."""
    head = '[workflow]\nname = "big"\nversion = 1\ninitial = "s0"\n[actors]\nx = "X"\n'
    step = '[[transitions]]\ntrigger = "{}"\nsource = "{}"\ntarget = "{}"\nactors = ["x"]\n'
    n = 10_000
    chain = [head, *(f"[states.s{i}]\n" for i in range(n)), "[states.end]\nfinal = true\n",
             *(step.format(f"t{i}", f"s{i}", f"s{i + 1}" if i + 1 < n else "end")
               for i in range(n))]
    n = 5_200
    shared = [head, '[states.s0]\ninitial = "c0"\n[states.c0]\nparent = "s0"\n'
              '[states.end]\nfinal = true\n', step.format("go", "c0", "end"),
              *(f'[states.f{i}]\nparent = "s0"\n' for i in range(n)),
              *(step.format(f"t{i}", "c0", f"f{i}") + step.format("go", f"f{i}", "end")
                for i in range(n))]
    return {"chain": "".join(chain), "shared trigger": "".join(shared)}


@pytest.mark.parametrize("kind", ["chain", "shared trigger"])
def test_the_largest_sound_files_load_without_a_hang(kind):
    """A sound 1 MB workflow loads within the hang guard: its checks asked every leaf about
    every step (and compared every pair of a trigger's sources), which took minutes."""
    text = _largest_workflows()[kind]
    assert 900_000 < len(text.encode()) <= 1_000_000
    with no_hang():
        wf = af.loads_workflow(text, source="big.toml")
    assert "end" in wf.states


# -- values given to the store --------------------------------------------------------------


def _counts(url: str) -> tuple[int, int, int]:
    with rawdb.raw(url) as conn:
        return (conn.execute("SELECT count(*) FROM events").fetchone()[0],
                conn.execute("SELECT count(*) FROM cases").fetchone()[0],
                conn.execute("SELECT count(*) FROM workflows").fetchone()[0])


def _dump(url: str) -> list[str]:
    return rawdb.dump(url)


def _holds_nul(*values: Any) -> bool:
    """Whether U+0000 is in any text of the values (also in keys and nested data)."""
    for value in values:
        if isinstance(value, str) and "\x00" in value:
            return True
        if isinstance(value, dict) and _holds_nul(*value.keys(), *value.values()):
            return True
        if isinstance(value, list) and _holds_nul(*value):
            return True
    return False


def _nul_refused(error: af.StoreError, backend: str, *values: Any) -> bool:
    """A StoreError is the refusal PostgreSQL gives a value holding U+0000, and only that."""
    return backend == "postgres" and _holds_nul(*values) and "U+0000" in str(error)


def test_hostile_case_ids_notes_and_data_are_stored_verbatim_or_refused(store_url, backend,
                                                                        figures):  # noqa: F811
    """Any case id, note and data is read back exactly as given, or refused with
    InvalidInputError (on PostgreSQL, U+0000 with StoreError) and nothing stored."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    store = af.open_store(store_url)
    tried, stored = [], []

    @FUZZ
    @given(case_id=st.one_of(hostile_text, st.text(min_size=1, max_size=60)),
           note=st.one_of(st.none(), hostile_text),
           data=st.dictionaries(st.one_of(hostile_text, ids), json_values, max_size=4))
    def check(case_id: str, note: str | None, data: dict[str, Any]) -> None:
        tried.append(1)
        before = _counts(store_url)
        exists = any(s.case_id == case_id for s in store.cases())
        try:
            store.create_case(wf, case_id, actor="tmf", on="2022-01-10",
                              data={**data, "amount": 5}, note=note)
        except af.CaseExistsError:
            assert exists
            assert _counts(store_url) == before
            return
        except af.InvalidInputError as e:
            assert str(e), "a refusal must say why"
            assert _counts(store_url) == before
            return
        except af.StoreError as e:
            assert _nul_refused(e, backend, note, data), e
            assert _counts(store_url) == before
            return
        stored.append(1)
        case = store.case(case_id)
        first = case.history[0]
        assert (case.id, first.note, dict(first.data)) == (case_id, note, {**data, "amount": 5})
        assert _counts(store_url)[0] == before[0] + 1

    check()
    assert store.verify().ok
    store.close()
    assert _counts(store_url)[1] == len(stored)  # every table is still there
    if backend != "sqlite":
        return
    figures("fuzz_store_creates", len(tried), "hostile case ids, notes and data given to "
            "create_case (SQL, quotes, control characters, surrogates, NaN, long text)")
    figures("fuzz_store_creates_stored", len(stored), "of them stored and read back verbatim "
            "(the rest refused with InvalidInputError, nothing written)")


def test_hostile_fire_values_are_stored_verbatim_or_refused(store_url, backend,
                                                            figures):  # noqa: F811
    """Any note, key and data on a step is read back exactly, or refused with nothing
    stored."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    store = af.open_store(store_url)
    tried = []

    @FUZZ
    @given(note=st.one_of(st.none(), hostile_text), key=st.one_of(st.none(), hostile_text),
           data=st.dictionaries(hostile_text, json_values, max_size=4))
    def check(note: str | None, key: str | None, data: dict[str, Any]) -> None:
        tried.append(1)
        case = store.create_case(wf, f"case-{len(tried)}", actor="tmf", on="2022-01-10",
                                 data={"amount": 5})
        before = _counts(store_url)
        try:
            event = case.fire("propose", actor="tmf", on="2022-01-11", note=note, key=key,
                              data=data)
        except af.InvalidInputError:
            assert _counts(store_url) == before
            assert case.version == 1
            return
        except af.TransitionRefusedError:  # data that breaks the proposal_ok guard
            assert _counts(store_url) == before
            assert "amount" in data
            return
        except af.StoreError as e:
            assert _nul_refused(e, backend, note, key, data), e
            assert _counts(store_url) == before
            assert case.version == 1
            return
        again = store.case(case.id).history[-1]
        assert (again.note, again.key, dict(again.data)) == (note, key, data)
        assert again.hash == event.hash

    check()
    assert store.verify().ok
    store.close()
    if backend == "sqlite":
        figures("fuzz_store_fires", len(tried), "steps fired with hostile notes, keys and "
                "data")


@pytest.mark.parametrize("where", ["note", "key", "data value", "data key"])
def test_u0000_is_stored_verbatim_or_refused_with_one_clear_error(store, store_url, backend,
                                                                  where):
    """The character U+0000 in a note, a key or data: SQLite stores it verbatim;
    PostgreSQL, whose text can't hold it, refuses the step with one StoreError naming
    the character, and stores nothing (creation and step alike)."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    value = "a\x00b"
    given: dict[str, Any] = {
        "note": {"note": value}, "key": {"key": value},
        "data value": {"data": {"text": value}}, "data key": {"data": {value: 1}}}[where]
    case = store.create_case(wf, "c", actor="tmf", on="2022-01-10", data={"amount": 5})
    before = _dump(store_url)
    if backend == "sqlite":
        event = case.fire("propose", actor="tmf", on="2022-01-11", **given)
        again = store.case("c").history[-1]
        assert (again.note, again.key, dict(again.data)) == (event.note, event.key,
                                                             dict(event.data))
        assert value in (again.note, again.key, *again.data, *again.data.values())
        assert store.verify().ok
        return
    with pytest.raises(af.StoreError) as err:
        case.fire("propose", actor="tmf", on="2022-01-11", **given)
    assert "U+0000" in str(err.value) and "remove it" in str(err.value)
    assert "Traceback" not in str(err.value)
    assert case.version == 1
    assert _dump(store_url) == before
    if where != "key":  # a creation takes no key
        with pytest.raises(af.StoreError, match="U\\+0000"):
            store.create_case(wf, "d", actor="tmf", on="2022-01-10",
                              **{"note": given.get("note"),
                                 "data": {"amount": 5, **given.get("data", {})}})
        assert _dump(store_url) == before
    case.fire("propose", actor="tmf", on="2022-01-11", note="a b")  # the store goes on
    assert store.verify().ok


def test_u0000_inside_a_bulk_block_stores_none_of_the_block(store, store_url, backend):
    """A step refused for U+0000 inside a bulk block (PostgreSQL) leaves the block unable
    to commit: none of its steps is stored, and its Case objects are as before."""
    if backend == "sqlite":
        pytest.skip("SQLite stores U+0000: nothing is refused")
    wf = af.load_workflow("medfinansiering-restbeloeb")
    case = store.create_case(wf, "c", actor="tmf", on="2022-01-10", data={"amount": 5})
    before = _dump(store_url)
    with pytest.raises(af.StoreError), store.bulk():
        store.create_case(wf, "in-block", actor="tmf", on="2022-01-10", data={"amount": 5})
        with pytest.raises(af.StoreError, match="U\\+0000"):
            case.fire("propose", actor="tmf", on="2022-01-11", note="a\x00b")
        case.fire("propose", actor="tmf", on="2022-01-11", note="after the refusal")
    assert case.version == 1
    assert _dump(store_url) == before
    assert [s.case_id for s in store.cases()] == ["c"]
    assert store.verify().ok


@pytest.mark.parametrize("value", [b"mimerskvarteret", b"\xff\xfe", 42, None, 3.5,
                                   ["a"], "\ud800"])
def test_values_that_are_not_text_are_refused(store, value):
    """Bytes (UTF-8 or not), numbers, lists and lone surrogates are refused as ids and
    actors, naming the value."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    with pytest.raises(af.InvalidInputError) as err:
        store.create_case(wf, value, actor="tmf", on="2022-01-10", data={"amount": 5})
    assert "case id" in str(err.value)
    with pytest.raises(af.InvalidInputError, match="actor"):
        store.create_case(wf, "x", actor=value, on="2022-01-10", data={"amount": 5})
    assert store.cases() == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), b"bytes",
                                   {1: "int key"}, {"set"}, dt.date(2022, 1, 1), object()])
def test_data_that_json_cannot_hold_exactly_is_refused(store, value):
    """NaN, Infinity, bytes, non-string keys, sets and dates in data are refused."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    with pytest.raises(af.InvalidInputError, match="data"):
        store.create_case(wf, "x", actor="tmf", on="2022-01-10", data={"amount": 5, "v": value})
    assert store.cases() == []


@pytest.mark.parametrize("data", [{"\ud800": "1"}, {"plan": "\udcff"}, {"a": float("nan")},
                                  {"a": 10**5000}, {"a": ["\ud800"]}, {"a": object()}])
def test_cases_refuses_a_data_filter_it_could_not_store(store, data):
    """store.cases(data=...) with a lone surrogate, NaN, a huge int or a non-JSON value is
    InvalidInputError naming the data, as create_case would refuse it."""
    with pytest.raises(af.InvalidInputError, match="data"):
        store.cases(data=data)


@pytest.mark.parametrize("workflow", ["\udcff", "x\ud800y", 42, None, "w" * 100_000])
def test_create_case_refuses_a_workflow_name_that_is_not_text(store, workflow):
    """create_case with a lone surrogate, a non-string or 100,000 characters as the workflow:
    InvalidInputError naming the workflow (not echoing all of it), nothing stored."""
    with pytest.raises(af.InvalidInputError, match="workflow") as info:
        store.create_case(workflow, "x", actor="tmf", on="2022-01-10")
    assert len(str(info.value)) < 300
    assert store.cases() == []


@pytest.mark.parametrize("case_id", SQL[:-1])
def test_sql_in_a_case_id_is_only_text(store, case_id):
    """SQL in a case id is stored as that text; every table is still there."""
    store.create_case("medfinansiering-restbeloeb", case_id, actor="tmf", on="2022-01-10",
                      data={"amount": 5}, note=case_id)
    assert [s.case_id for s in store.cases()] == [case_id]
    assert store.case(case_id).history[0].note == case_id
    assert store.verify().ok


class _Disguised(str):
    """Text whose own methods lie: iterating it hides its control characters, it claims
    to equal every string, and it prints as something else."""

    def __iter__(self):  # type: ignore[override]
        return iter("ok")

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return hash("tmf")

    def __str__(self) -> str:
        return "tmf"


def test_a_str_subclass_is_checked_and_stored_as_the_text_it_holds(store):
    """An id, actor or person given as a str subclass whose methods lie is held to the
    rules as the text it holds: a case id with a control character, an actor the
    workflow does not have and a blank person are refused, and nothing is stored (the
    subclass passed its own checks and its real text was stored, which verify refuses)."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    with pytest.raises(af.InvalidInputError, match="control character"):
        store.create_case(wf, _Disguised("a\x07b"), actor="tmf", on="2022-01-10",
                          data={"amount": 5})
    with pytest.raises(af.InvalidInputError, match="not an actor"):
        store.create_case(wf, "c", actor=_Disguised("mallory"), on="2022-01-10",
                          data={"amount": 5})
    case = store.create_case(wf, "c", actor="tmf", on="2022-01-10", data={"amount": 5})
    with pytest.raises(af.TransitionRefusedError, match="'mallory' is not an actor"):
        case.fire("propose", actor=_Disguised("mallory"), on="2022-01-11")
    with pytest.raises(af.InvalidInputError, match="must name a person"):
        case.fire("propose", actor="tmf", on="2022-01-11", by=_Disguised("\x07"))
    event = case.fire("propose", actor="tmf", on="2022-01-11", note=_Disguised("a note"))
    assert type(event.actor) is str and store.case("c").history[-1].note == "a note"
    assert [c.case_id for c in store.cases()] == ["c"]
    assert store.verify().ok


def test_data_given_as_subclasses_is_copied_as_the_values_they_hold(store):
    """Case data whose values are subclasses of str, int or float that lie about
    themselves is copied as the values they hold, before anything decides on it: the
    case and its guards see what is stored (a subclass kept in the copy let the step be
    decided on its lies while its real value was stored)."""
    from approvalflow.canonical import check_data

    class Amount(int):
        def __int__(self) -> int:
            return 1

        def __gt__(self, other: object) -> bool:
            return False

    class Share(float):
        def __float__(self) -> float:
            return 0.0

    copied = check_data({_Disguised("k"): _Disguised("v"), "n": Amount(5), "f": Share(1.5)})
    assert copied == {"k": "v", "n": 5, "f": 1.5}
    assert [type(v) for v in (*copied, *copied.values())] == [str, str, str, str, int, float]
    case = store.create_case("medfinansiering-restbeloeb", "c", actor="tmf",
                             on="2022-01-10", data={"amount": Amount(5)})
    assert type(case.data["amount"]) is int
    assert store.case("c").data == {"amount": 5} and store.verify().ok


def test_u0000_in_a_question_gets_the_same_answer_on_every_backend(store):
    """A question naming U+0000 (an actor, a workflow, a data value) matches nothing
    stored: the same answer or error on both backends (PostgreSQL's server refused the
    parameter: a StoreError where SQLite answered)."""
    store.create_case("medfinansiering-restbeloeb", "c", actor="tmf", on="2022-01-10",
                      data={"amount": 5})
    nul = "a\x00b"
    assert store.cases(workflow=nul).total == 0
    assert store.cases(data={"amount": nul}).total == 0
    assert store.cases(data={nul: 5}).total == 0
    assert store.due(workflow=nul) == []
    with pytest.raises(af.InvalidInputError, match="is not an actor of any workflow"):
        store.awaiting(nul, on="2022-01-10")
    with pytest.raises(af.InvalidInputError, match="is not an actor of any workflow"):
        store.cases(awaiting=nul, on="2022-01-10")
    with pytest.raises(af.StoreError, match="is not in"):
        store.workflow(nul, 1)
    assert store.cases(data={"amount": 5}).total == 1  # a question without it still answers


# -- refused steps write nothing --------------------------------------------------------------


@pytest.fixture
def loop_case(store):
    case = store.create_case("medfinansiering-restbeloeb", "restbeloeb", actor="tmf",
                             on="2022-01-10", data={"amount": 5})
    case.fire("propose", actor="tmf", on="2022-01-12")
    return case


REFUSALS = [
    ({"trigger": "tmu.recommend", "actor": "mallory", "on": "2022-01-13"},
     af.TransitionRefusedError, "'mallory' is not an actor"),
    ({"trigger": "tmu.recommend", "actor": "tmf", "on": "2022-01-13"},
     af.TransitionRefusedError, "'tmf' may not take 'tmu.recommend'"),
    ({"trigger": "br.approve", "actor": "br", "on": "2022-01-13"},
     af.TransitionRefusedError, "can't be taken while the case is in"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": "2022-01-11"},
     af.TransitionRefusedError, "dates may not go backwards"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": "2022-02-30"},
     af.InvalidInputError, "not a real date"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": "2022-13-01"},
     af.InvalidInputError, "not a real date"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": "22-1-1"},
     af.InvalidInputError, "not a real date"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": "2022-01-13T10:00"},
     af.InvalidInputError, "not a real date"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": dt.datetime(2022, 1, 13)},
     af.InvalidInputError, "not a datetime"),
    ({"trigger": "tmu.recommend", "actor": "tmu", "on": 20220113},
     af.InvalidInputError, "must be a date"),
    ({"trigger": "no.such.step", "actor": "tmu", "on": "2022-01-13"},
     af.TransitionRefusedError, "is not a step of workflow"),
    ({"trigger": "tmu.recommend", "actor": "", "on": "2022-01-13"},
     af.InvalidInputError, "actor must not be empty"),
]


@pytest.mark.parametrize("step, error, reason", REFUSALS,
                         ids=[f"{s['actor'] or 'empty'}-{s['trigger']}-{s['on']}"
                              for s, _, _ in REFUSALS])
def test_refused_steps_say_why_and_write_nothing(loop_case, store_url, step, error, reason):
    """Unknown or wrong actors, other states' steps, backward and impossible dates are
    refused with the reason, and the file's content is unchanged."""
    before = _dump(store_url)
    with pytest.raises(error) as err:
        loop_case.fire(step["trigger"], actor=step["actor"], on=step["on"])
    assert reason in str(err.value)
    assert _dump(store_url) == before
    assert loop_case.version == 2


def test_create_with_an_unknown_actor_or_impossible_date_writes_nothing(store, store_url):
    """create_case refuses an actor outside the workflow and an impossible date."""
    wf = af.load_workflow("medfinansiering-restbeloeb")
    before = _dump(store_url)
    with pytest.raises(af.InvalidInputError, match="'mallory' is not an actor"):
        store.create_case(wf, "x", actor="mallory", on="2022-01-10", data={"amount": 5})
    with pytest.raises(af.InvalidInputError, match="not a real date"):
        store.create_case(wf, "x", actor="tmf", on="2022-02-29", data={"amount": 5})
    assert _dump(store_url) == before


def test_a_view_as_of_a_date_cannot_fire(store, loop_case, store_url):
    """A case loaded as of an earlier date refuses every step and writes nothing."""
    view = store.case("restbeloeb", as_of="2022-01-10")
    before = _dump(store_url)
    with pytest.raises(af.TransitionRefusedError, match="as of 2022-01-10"):
        view.fire("propose", actor="tmf", on="2022-01-13")
    assert _dump(store_url) == before


def test_a_finished_case_refuses_every_step(store, store_url):
    """Nothing more can happen to a case in a final state."""
    case = store.create_case("medfinansiering-restbeloeb", "done", actor="tmf",
                             on="2022-01-10", data={"amount": 5})
    case.fire("withdraw", actor="tmf", on="2022-01-11")
    before = _dump(store_url)
    for trigger, actor in [("propose", "tmf"), ("withdraw", "tmf"), ("br.approve", "br")]:
        with pytest.raises(af.TransitionRefusedError, match="final state"):
            case.fire(trigger, actor=actor, on="2022-01-12")
    assert _dump(store_url) == before
