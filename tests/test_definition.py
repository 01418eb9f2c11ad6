"""Loading workflow files: sound ones load, unsound ones raise DefinitionError naming the ids."""

from __future__ import annotations

from pathlib import Path

import pytest

import approvalflow as af
from approvalflow.loading import loads_workflow

MINI = """
[workflow]
name = "mini"
version = 1
initial = "a"

[actors]
x = "Xavier"
y = "Yrsa"

[states.a]
label = "A"

[states.b]
label = "B"
final = true

[[transitions]]
trigger = "go"
source = "a"
target = "b"
actors = ["x"]
"""

PARALLEL = """
[workflow]
name = "par"
version = 1
initial = "start"

[actors]
x = "X"
y = "Y"
v1 = "V1"
v2 = "V2"
v3 = "V3"

[states.start]
[states.both]
parallel = true
[states.left]
parent = "both"
initial = "l1"
[states.l1]
parent = "left"
[states.l2]
parent = "left"
final = true
[states.right]
parent = "both"
initial = "r1"
[states.r1]
parent = "right"
[states.r2]
parent = "right"
final = true
[states.done]
final = true
[states.stopped]
final = true

[votes.panel]
state = "r1"
voters = ["v1", "v2", "v3"]
need = 2

[[transitions]]
trigger = "begin"
source = "start"
target = "both"
actors = ["x"]

[[transitions]]
trigger = "left.ok"
source = "l1"
target = "l2"
actors = ["x"]

[[transitions]]
trigger = "right.yes"
source = "r1"
target = "r2"
vote = "panel"

[[transitions]]
trigger = "right.no"
source = "r1"
target = "stopped"
vote = "panel"
ballot = "no"

[[transitions]]
trigger = "finish"
source = "both"
target = "done"
actors = ["y"]
"""


def load(text: str) -> af.Workflow:
    return loads_workflow(text, source="test.toml")


def refused(text: str) -> str:
    with pytest.raises(af.DefinitionError) as info:
        load(text)
    return str(info.value)


@pytest.mark.parametrize("name", af.bundled_workflows())
def test_bundled_workflows_load(name: str) -> None:
    """Every bundled workflow loads by name and exposes its states, triggers and actors."""
    wf = af.load_workflow(name)
    assert wf.name == name
    assert wf.initial in wf.states
    assert wf.triggers and wf.actors
    assert all(isinstance(label, str) and label for label in wf.actors.values())


def test_bundled_list_has_both_workflows() -> None:
    """The flagship and the remainder workflow ship with the package."""
    assert {"boligsocial-helhedsplan", "medfinansiering-restbeloeb"} <= set(af.bundled_workflows())


def test_mini_workflow_loads() -> None:
    """A minimal sound file loads with its ids, labels and transitions."""
    wf = load(MINI)
    assert wf.states == frozenset({"a", "b"})
    assert wf.triggers == frozenset({"go"})
    assert wf.actors == {"x": "Xavier", "y": "Yrsa"}
    assert wf.label_of("a") == "A"
    assert wf.state("b").final


def test_parallel_workflow_loads_with_join_and_vote() -> None:
    """A transition leaving a parallel state is a join; a vote group keeps its need."""
    wf = load(PARALLEL)
    finish = wf.transitions_for("finish")[0]
    assert finish.join is True
    assert wf.votes["panel"].need == 2
    assert wf.transitions_for("right.yes")[0].actors == ("v1", "v2", "v3")
    assert wf.state("both").kind == "parallel"
    assert wf.regions("both") == ("left", "right")


def test_load_by_path(tmp_path: Path) -> None:
    """A path loads the file; the workflow remembers where it came from."""
    path = tmp_path / "mini.toml"
    path.write_text(MINI, encoding="utf-8")
    wf = af.load_workflow(path)
    assert wf.path == str(path)
    assert af.load_workflow(str(path)).digest == wf.digest


def test_unknown_bundled_name_lists_the_bundled_ones() -> None:
    """An unknown name says which workflows are bundled."""
    with pytest.raises(af.DefinitionError, match="boligsocial-helhedsplan"):
        af.load_workflow("no-such-workflow")


def test_missing_file(tmp_path: Path) -> None:
    """A missing file is a DefinitionError naming the path."""
    with pytest.raises(af.DefinitionError, match="no such workflow file"):
        af.load_workflow(tmp_path / "absent.toml")


def test_not_utf8(tmp_path: Path) -> None:
    """A file that is not UTF-8 is refused with the offset of the bad byte."""
    path = tmp_path / "bad.toml"
    path.write_bytes(MINI.encode() + b"\xff\xfe")
    with pytest.raises(af.DefinitionError, match="not UTF-8"):
        af.load_workflow(path)


@pytest.mark.parametrize("raw, says", [
    (b"\xef\xbb\xbf" + MINI.encode(), "starts with a byte order mark"),
    (b"\xff\xfe" + MINI.encode("utf-16-le"), "is UTF-16 text"),
    (b"\xfe\xff" + MINI.encode("utf-16-be"), "is UTF-16 text"),
])
def test_a_byte_order_mark_is_named(tmp_path: Path, raw: bytes, says: str) -> None:
    """A file starting with a UTF-8 BOM, or UTF-16 text, is refused saying so (not "Invalid
    statement at line 1, column 1" or a bad byte at offset 0), by path and as text."""
    path = tmp_path / "bom.toml"
    path.write_bytes(raw)
    with pytest.raises(af.DefinitionError) as info:
        af.load_workflow(path)
    assert str(info.value).startswith(f"{path}: the ") and says in str(info.value)
    if raw.startswith(b"\xef"):
        assert says in refused(raw.decode("utf-8"))


def test_toml_syntax_error_names_line() -> None:
    """A TOML syntax error names the file and the line."""
    message = refused(MINI + "\n[states.c\n")
    assert "test.toml" in message and "line" in message


def test_duplicate_state_table_is_refused() -> None:
    """Declaring the same state twice is refused (TOML forbids the duplicate table)."""
    assert "test.toml" in refused(MINI + '\n[states.a]\nlabel = "again"\n')


def test_unknown_keys() -> None:
    """Unknown keys in any table are named with the allowed keys."""
    message = refused(MINI.replace('label = "A"', 'label = "A"\ncolour = "red"')
                      .replace('trigger = "go"', 'trigger = "go"\nwho = ["x"]')
                      + "\n[extra]\n")
    assert "'colour'" in message and "'who'" in message and "'extra'" in message
    assert "allowed keys" in message


def test_wrong_types() -> None:
    """A value of the wrong type is named with the expected type."""
    message = refused(MINI.replace("version = 1", 'version = "one"'))
    assert "[workflow].version must be int" in message


def test_missing_required_parts() -> None:
    """A file without [workflow], [actors], states or transitions lists each missing part."""
    message = refused('title = "nothing"\n')
    for part in ("[workflow]", "[actors]", "[states]", "[[transitions]]"):
        assert part in message


def test_unknown_state_references() -> None:
    """Sources, targets, parents and the initial state must be states."""
    message = refused(MINI.replace('target = "b"', 'target = "nowhere"')
                      .replace('initial = "a"', 'initial = "void"'))
    assert "'nowhere'" in message and "'void'" in message


def test_unknown_actor() -> None:
    """An actor list naming an unknown actor is refused with the known actors."""
    message = refused(MINI.replace('actors = ["x"]', 'actors = ["x", "zed"]'))
    assert "['zed'] are not actors" in message and "'x', 'y'" in message


def test_unknown_guard() -> None:
    """A guard that is not registered is refused with the registered guards."""
    message = refused(MINI.replace('actors = ["x"]', 'actors = ["x"]\nguards = ["moon_is_full"]'))
    assert "guard 'moon_is_full' is not registered" in message
    assert "financing_ok" in message


def test_registered_guard_is_accepted() -> None:
    """A guard registered with @approvalflow.guard can be named in a file."""

    @af.guard("always_fine")
    def always_fine(ctx: af.GuardContext) -> bool:
        return True

    try:
        wf = load(MINI.replace('actors = ["x"]', 'actors = ["x"]\nguards = ["always_fine"]'))
        assert wf.transitions_for("go")[0].guards == ("always_fine",)
    finally:
        from approvalflow.guards import unregister_guard

        unregister_guard("always_fine")


def test_unreachable_state() -> None:
    """A state no transition leads to is unreachable from the initial state."""
    message = refused(MINI + '\n[states.island]\nfinal = true\n')
    assert "states ['island'] are unreachable from initial state 'a'" in message


def test_trap_state() -> None:
    """A non-final state with no way out is a trap."""
    text = MINI.replace('final = true', '') + """
[[transitions]]
trigger = "back"
source = "a"
target = "a"
actors = ["y"]
"""
    assert "state 'b' is not final but has no way out" in refused(text)


def test_final_state_with_outgoing_transition() -> None:
    """A final state may not have outgoing transitions."""
    text = MINI + """
[[transitions]]
trigger = "reopen"
source = "b"
target = "a"
actors = ["x"]
"""
    assert "final state 'b' has an outgoing transition 'reopen'" in refused(text)


def test_trigger_no_actor_may_fire() -> None:
    """A transition without actors (and no vote group) is refused."""
    assert "no actor may fire 'go'" in refused(MINI.replace('actors = ["x"]\n', ""))


def test_duplicate_transition() -> None:
    """The same trigger from the same source twice is refused."""
    text = MINI + '\n[[transitions]]\ntrigger = "go"\nsource = "a"\ntarget = "b"\nactors = ["y"]\n'
    assert "defined twice" in refused(text)


def test_invalid_ids() -> None:
    """Ids must be lower-case letters, digits, '_' and '-'."""
    message = refused(MINI.replace("[states.b]", '[states."B b"]')
                      .replace('target = "b"', 'target = "B b"'))
    assert "'B b' is not a valid id" in message


@pytest.mark.parametrize("old, new", [
    ('[states.b]', '[states."b\\n"]'), ('x = "Xavier"', '"x\\n" = "Xavier"'),
    ('name = "mini"', 'name = "mini\\n"'), ('trigger = "go"', 'trigger = "go\\n"'),
])
def test_an_id_ending_in_a_newline_is_not_valid(old: str, new: str) -> None:
    """A state, actor, workflow name or trigger ending in a newline is not a valid id."""
    text = MINI.replace(old, new).replace('target = "b"', 'target = "b\\n"' if "states" in old
                                          else 'target = "b"')
    assert "\\n' is not a valid id" in refused(text)


def test_reserved_trigger() -> None:
    """The event log's own trigger names are reserved."""
    assert "reserved" in refused(MINI.replace('trigger = "go"', 'trigger = "create"'))


@pytest.mark.parametrize("name, taken", [("state", "current state"),
                                          ("is_b", "check for state 'b'")])
def test_trigger_named_like_the_statecharts_own_attributes(name: str, taken: str) -> None:
    """A trigger named 'state' or 'is_<a state>' (names the statechart gives its model) is
    one DefinitionError naming it, not a ValueError from building the engine."""
    message = refused(MINI.replace('trigger = "go"', f'trigger = "{name}"'))
    assert f"the trigger name {name!r} is taken by the statechart's {taken}" in message


def test_parent_cycle() -> None:
    """States that are their own ancestors are refused."""
    text = MINI + ('\n[states.p]\nparent = "q"\ninitial = "q"\n'
                   '[states.q]\nparent = "p"\ninitial = "p"\n')
    assert "their own ancestors" in refused(text)


def test_compound_needs_initial() -> None:
    """A state with children needs an initial child that is one of them."""
    text = MINI.replace('[states.a]\nlabel = "A"',
                        '[states.a]\nlabel = "A"\ninitial = "zz"\n[states.a1]\nparent = "a"')
    assert "initial 'zz' is not one of its children" in refused(text)


def test_parallel_region_needs_states() -> None:
    """Each region of a parallel state must have states of its own."""
    text = PARALLEL.replace('[states.right]\nparent = "both"\ninitial = "r1"',
                            '[states.right]\nparent = "both"')
    text = text.replace('parent = "right"', 'parent = "left"')
    assert "is a region of parallel state 'both' but has no child states" in refused(text)


def test_vote_group_checks() -> None:
    """Vote groups need known voters, a reachable need, and ballots from their state."""
    ghost = refused(PARALLEL.replace('voters = ["v1", "v2", "v3"]', 'voters = ["v1", "ghost"]'))
    assert "['ghost'] are not actors" in ghost
    assert "need is 5; with 3 voters" in refused(PARALLEL.replace("need = 2", "need = 5"))


@pytest.mark.parametrize("need", ["true", "2.5", "[2]", '"most"'])
def test_a_vote_need_that_is_neither_all_nor_a_number_says_what_is_allowed(need: str) -> None:
    """need = true, 2.5, a list or another word: one message saying "all" or a whole
    number of yes-votes is allowed (true said 'must be str or int')."""
    message = refused(PARALLEL.replace("need = 2", f"need = {need}"))
    assert '[votes.panel].need must be "all" or a whole number of yes-votes' in message


VOTE = """
[workflow]
name = "vote"
version = 1
initial = "voting"

[actors]
x = "X"
y = "Y"
z = "Z"

[states.voting]
[states.passed]
final = true
[states.failed]
final = true

[votes.panel]
state = "voting"
voters = ["x", "y", "z"]
need = 3

[[transitions]]
trigger = "yes"
source = "voting"
target = "passed"
vote = "panel"
actors = ["x", "y"]

[[transitions]]
trigger = "no"
source = "voting"
target = "failed"
vote = "panel"
ballot = "no"
"""


def test_a_vote_whose_yes_ballot_too_few_voters_may_cast_is_refused() -> None:
    """need = 3 with a yes ballot only two of the three voters may cast: the vote could
    never pass (a case always ends in 'failed', which explore does not flag), so loading
    refuses it; need = 2 loads."""
    assert ("[votes.panel].need is 3, but only 2 voter(s) may cast its yes ballot "
            "(['x', 'y'])") in refused(VOTE)
    assert load(VOTE.replace("need = 3", "need = 2")).votes["panel"].need == 2


def test_a_vote_nothing_can_decide_is_refused() -> None:
    """A vote whose only ballots are withdrawals, with no 'withdrawn' state, could never be
    decided: a case in its state would be stuck, so loading refuses it."""
    text = (VOTE.replace('ballot = "no"', 'ballot = "withdraw"')
            .replace('vote = "panel"\nactors = ["x", "y"]', 'vote = "panel"\nballot = "withdraw"'))
    assert "[votes.panel] has no yes or no ballot" in refused(text)


def test_vote_ballot_from_wrong_state() -> None:
    """A ballot must start from its vote group's state."""
    text = PARALLEL.replace('trigger = "right.no"\nsource = "r1"',
                            'trigger = "right.no"\nsource = "l1"')
    assert "must start from its state 'r1'" in refused(text)


def test_trigger_in_two_parallel_regions() -> None:
    """One trigger may not move two parallel regions at once."""
    text = PARALLEL + ('\n[[transitions]]\ntrigger = "left.ok"\nsource = "r1"\n'
                       'target = "r2"\nactors = ["x"]\n')
    assert "parallel regions of 'both'" in refused(text)


def test_a_step_into_one_region_from_outside_is_refused() -> None:
    """A step from outside a parallel state into a state of one of its regions would enter
    that region alone, leaving the case stuck: refused, naming the regions left out."""
    for target in ("l2", "left"):
        text = PARALLEL + (f'\n[[transitions]]\ntrigger = "jump"\nsource = "start"\n'
                           f'target = "{target}"\nactors = ["x"]\n')
        assert (f"'jump' from 'start' targets {target!r}, inside region 'left' of parallel "
                f"state 'both', from outside 'both': the regions ['right'] would not be "
                f"entered") in refused(text)
    inside = PARALLEL + ('\n[[transitions]]\ntrigger = "back"\nsource = "r1"\n'
                         'target = "l1"\nactors = ["x"]\n')
    assert "back" in load(inside).triggers


def test_a_date_from_data_nothing_may_set_is_refused() -> None:
    """A timed step at "data:when" as the only way out, with creation_sets and every step's
    sets leaving 'when' out: the clock could never take it and the case never end, yet it
    loaded (and explore said ok). A deadline on such a key is refused too."""
    text = MINI.replace('initial = "a"', 'initial = "a"\ncreation_sets = ["other"]').replace(
        'actors = ["x"]', 'at = "data:when"')
    assert ("[[transitions]] ('go' from 'a').at is the date in the case data 'when', but "
            "neither the creation (creation_sets ['other']) nor any step's 'sets' may set "
            "it") in refused(text)
    deadline = MINI.replace('initial = "a"', 'initial = "a"\ncreation_sets = []').replace(
        'actors = ["x"]', 'actors = ["x"]\nsets = ["due.day"]\ndeadline = "data:due"')
    assert "('go' from 'a').deadline is the date in the case data 'due'" in refused(deadline)
    assert load(deadline.replace('"due.day"', '"due"')).triggers == {"go"}
    assert load(text.replace('["other"]', '["other", "when"]')).triggers == {"go"}


def test_a_malformed_data_date_and_a_final_state_deadline_are_refused() -> None:
    """A date read from a data key that is not one ('a..b', ' when') is refused as 'sets'
    refuses it, in both forms; a deadline on a final state, which a case never leaves,
    means nothing and is refused."""
    for ref in ('"data:due..day"', '{ data = "due..day", days = 2 }', '"data: due"'):
        text = MINI.replace('actors = ["x"]', f'actors = ["x"]\ndeadline = {ref}')
        assert "is not a data key" in refused(text), ref
    final = MINI.replace('final = true', 'final = true\ndeadline = "2024-03-01"')
    assert ("[states.b].deadline: 'b' is a final state, which a case never leaves"
            in refused(final))
    assert load(MINI.replace('label = "A"', 'label = "A"\ndeadline = "2024-03-01"'))


def test_an_empty_done_is_refused() -> None:
    """done = [] on a region is refused: it named no final state, yet the region counted as
    done in every final state, as if 'done' were left out."""
    text = PARALLEL.replace('[states.left]\nparent = "both"',
                            '[states.left]\nparent = "both"\ndone = []')
    assert "[states.left].done is empty" in refused(text)


def test_every_problem_is_listed() -> None:
    """Several problems are reported together, one line each, all naming the file."""
    with pytest.raises(af.DefinitionError) as info:
        load(MINI.replace('actors = ["x"]', 'actors = ["nobody"]')
             .replace('target = "b"', 'target = "nowhere"'))
    problems = info.value.problems
    assert len(problems) == 2
    assert all(p.startswith("test.toml: ") for p in problems)
    assert str(info.value) == "\n".join(problems)


def test_definition_error_is_value_error() -> None:
    """DefinitionError subclasses ValueError and ApprovalflowError."""
    assert issubclass(af.DefinitionError, ValueError)
    assert issubclass(af.DefinitionError, af.ApprovalflowError)


@pytest.mark.parametrize("value", ["0", "false", '"text"', "[1, 2]"])
def test_workflow_table_of_the_wrong_type(value: str) -> None:
    """[workflow] given as a number, a boolean, a string or a list is a DefinitionError."""
    text = MINI.replace('[workflow]\nname = "mini"\nversion = 1\ninitial = "a"\n',
                        f"workflow = {value}\n")
    assert "[workflow] must be a table" in refused(text)


def test_join_needs_a_final_state_in_every_region() -> None:
    """A join from a parallel state whose region can never finish is refused."""
    text = PARALLEL.replace('[states.l2]\nparent = "left"\nfinal = true',
                            '[states.l2]\nparent = "left"')
    text += ('\n[[transitions]]\ntrigger = "left.back"\nsource = "l2"\ntarget = "l1"\n'
             'actors = ["x"]\n')
    message = refused(text)
    assert "'finish' leaves 'both' when every region is done, but region 'left' has no " \
           "final state" in message


def test_a_join_is_no_way_out_of_an_unfinished_state() -> None:
    """A region state whose only exit is the parent's join is a trap."""
    text = PARALLEL.replace('[[transitions]]\ntrigger = "left.ok"\nsource = "l1"\n'
                            'target = "l2"\nactors = ["x"]\n', '')
    text = text.replace('[states.l2]\nparent = "left"\nfinal = true\n', '')
    text = text.replace('initial = "l1"', 'initial = "l1"\n[states.l1b]\nparent = "left"\n'
                        'final = true\n', 1)
    message = refused(text)
    assert "state 'l1' is not final but has no way out" in message


def test_final_state_inside_a_composite_needs_an_exit() -> None:
    """A final leaf inside a composite that nothing leaves would strand the case."""
    text = MINI.replace('[states.b]\nlabel = "B"\nfinal = true',
                        '[states.b]\nlabel = "B"\ninitial = "b1"\n[states.b1]\nparent = "b"\n'
                        'final = true')
    assert "state 'b1' is final within 'b', but no transition leaves 'b'" in refused(text)


def test_a_workflow_needs_an_end() -> None:
    """A workflow with no top-level final state is refused: a case could never end."""
    text = MINI.replace('final = true', '') + (
        '\n[[transitions]]\ntrigger = "back"\nsource = "b"\ntarget = "a"\nactors = ["y"]\n')
    assert "no top-level state is final: a case could never end" in refused(text)


def test_a_loop_with_no_exit_is_refused() -> None:
    """States that can only go round in a circle, never to a final state, are refused."""
    text = MINI + """
[states.c]
[states.d]

[[transitions]]
trigger = "detour"
source = "a"
target = "c"
actors = ["x"]

[[transitions]]
trigger = "round"
source = "c"
target = "d"
actors = ["x"]

[[transitions]]
trigger = "again"
source = "d"
target = "c"
actors = ["x"]
"""
    assert "from states ['c', 'd'] no chain of steps leads to a final top-level state" \
        in refused(text)


def test_booleans_are_not_numbers() -> None:
    """need = true is refused (a bool is not a count of yes-votes)."""
    message = refused(PARALLEL.replace("need = 2", "need = true"))
    assert '[votes.panel].need must be "all" or a whole number of yes-votes, not bool True' \
        in message


def test_workflow_name_may_not_be_empty() -> None:
    """An empty [workflow].name is refused like any other invalid id."""
    assert "'' is not a valid id" in refused(MINI.replace('name = "mini"', 'name = ""'))
