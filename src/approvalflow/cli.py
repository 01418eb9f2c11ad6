"""The ``approvalflow`` command: a thin shell over the library.

Every :class:`~approvalflow.errors.ApprovalflowError` is turned into ``Error: ...``
on stderr and exit code 1 in one place, :class:`_Group`; usage errors (a bad
option, a date that is not ``YYYY-MM-DD``, ``--data`` that is not a JSON object)
exit with 2, as click does. The library is imported inside the commands, so
``approvalflow --help`` loads no more than click.

``show`` is built from :data:`PARTS`: each part adds one key to the JSON
object and one section to the text, so a new section is one more entry.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .summary import (
    allowed_line,
    by_trigger,
    case_summary,
    event_lines,
    ids,
    step_label,
    summary_text,
    wrap,
)

if TYPE_CHECKING:
    from .definition import Workflow
    from .store import Store

DB_ENV = "APPROVALFLOW_DB"
DEFAULT_DB = "approvalflow.db"


# --------------------------------------------------------------------------- errors


def _printable(text: str) -> str:
    """``text`` with anything that can't be written as UTF-8 (lone surrogates) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Failure(click.ClickException):
    """A failed command: one ``Error: ...`` line per line of the message, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        for line in self.message.splitlines() or [""]:
            click.echo(f"Error: {_printable(line)}", err=True)


class _Group(click.Group):
    """The command group; the one place library errors become ``Error:`` lines."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException:
            raise
        except Exception as e:
            from .errors import ApprovalflowError

            if isinstance(e, ApprovalflowError):
                raise Failure(str(e)) from e
            if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
                where = f" {os.fsdecode(e.filename)!r}" if e.filename else ""
                raise Failure(f"Could not use{where}: {e.strerror or e}.") from e
            raise


# --------------------------------------------------------------------------- parameter types


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class IsoDate(click.ParamType):  # type: ignore[type-arg]  # generic since click 8.2
    """A calendar date written ``YYYY-MM-DD``; anything else is a usage error naming it."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        text = str(value)
        try:
            if _DATE_RE.match(text):
                return dt.date.fromisoformat(text)
        except ValueError:
            pass
        self.fail(f"{text!r} is not a real date in the form YYYY-MM-DD "
                  f"(e.g. 2021-12-06).", param, ctx)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value; use null or a string")


def _parse_json(text: str, what: str, param: Any,
                p: click.Parameter | None, ctx: click.Context | None) -> Any:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        param.fail(f"{what} is nested too deeply.", p, ctx)
    except ValueError as e:
        param.fail(f"{what} is not valid JSON: {e}.", p, ctx)


class JsonObject(click.ParamType):  # type: ignore[type-arg]
    """A JSON object given inline (``'{"a": 1}'``) or read from a file (``@data.json``)."""

    name = "JSON|@FILE"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        text = str(value)
        what = "the value"
        if text.startswith("@"):
            path = text[1:]
            what = f"the file {path!r}"
            try:
                raw = Path(path).read_bytes()
            except OSError as e:
                self.fail(f"can't read {what}: {e.strerror or e}.", param, ctx)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.fail(f"{what} is not UTF-8 text (bad byte at offset {e.start}).",
                          param, ctx)
        data = _parse_json(text, what, self, param, ctx)
        if not isinstance(data, dict):
            self.fail(f"{what} is a JSON {type(data).__name__}, not an object; give an object "
                      f"such as '{{\"decided_on\": \"2021-12-06\"}}'.", param, ctx)
        return data


DATE = IsoDate()
JSON_OBJECT = JsonObject()

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON (the shapes are in docs/cli.md).")


# --------------------------------------------------------------------------- helpers


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def _db_path(ctx: click.Context) -> str:
    """--db, else $APPROVALFLOW_DB, else ./approvalflow.db."""
    path = ctx.obj.get("db") or os.environ.get(DB_ENV) or DEFAULT_DB
    if os.path.isdir(path):
        raise click.UsageError(f"The database {path!r} is a directory; give a file "
                               f"with --db or ${DB_ENV}.", ctx)
    return str(path)


def _open(ctx: click.Context, *, create: bool = False) -> Store:
    """The store at the resolved path; a missing file is an error unless ``create``."""
    from .store import open_store

    path = _db_path(ctx)
    if not create and not os.path.exists(path):
        raise Failure(f"There is no database at {path!r}; pass --db PATH or set "
                      f"${DB_ENV}, or create a case with 'approvalflow new'.")
    if not create and os.path.getsize(path) == 0:
        raise Failure(f"{path!r} is an empty file, not an approvalflow database; pass --db "
                      f"with the database's path.")
    return open_store(path, create=create)


def _load_workflow(name_or_path: str) -> Workflow:
    """A bundled workflow by name, or a workflow file by path."""
    from .definition import load_workflow

    if os.path.isfile(name_or_path):
        return load_workflow(Path(name_or_path))
    return load_workflow(name_or_path)


# --------------------------------------------------------------------------- the group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
              help=f"The database file (default: ${DB_ENV}, else ./{DEFAULT_DB}).")
@click.version_option(package_name="approvalflow")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Inspect and drive approval cases recorded in an SQLite event log."""
    ctx.obj = {"db": db}


# --------------------------------------------------------------------------- workflows


@cli.command()
@json_option
def workflows(as_json: bool) -> None:
    """List the bundled workflows: name, version and title."""
    from .definition import bundled_workflows, load_workflow

    rows: list[dict[str, Any]] = []
    for name in bundled_workflows():
        wf = load_workflow(name)
        rows.append({"name": wf.name, "version": wf.version, "title": wf.title,
                     "label": wf.label})
    if as_json:
        _echo_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        head = f"{r['name']:<{width}}  v{r['version']}  "
        for line in wrap(head + r["title"], 0, len(head)):
            click.echo(line)


@cli.command()
@click.argument("items", metavar="FILE_OR_NAME...", nargs=-1, required=True)
def check(items: tuple[str, ...]) -> None:
    """Validate workflow files (or bundled names); one Error line per problem."""
    from .errors import DefinitionError

    failed = 0
    for item in items:
        try:
            wf = _load_workflow(item)
        except DefinitionError as e:
            failed += 1
            problems = getattr(e, "problems", None) or str(e).splitlines()
            for problem in problems:
                click.echo(f"Error: {_printable(problem)}", err=True)
            continue
        click.echo(f"ok: {_printable(item)}: {wf.name} v{wf.version}, "
                   f"{len(wf.state_defs)} states, {len(wf.transitions)} transitions")
    if failed:
        raise click.exceptions.Exit(1)


# --------------------------------------------------------------------------- new and fire


def _remove_new_database(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(OSError):
            os.unlink(path + suffix)


@cli.command()
@click.argument("workflow")
@click.argument("case_id")
@click.option("--actor", required=True, help="Who creates the case (an actor of the workflow).")
@click.option("--on", type=DATE, default=None, help="The date of the creation (default: today).")
@click.option("--data", type=JSON_OBJECT, default=None,
              help="The case's data: a JSON object, or @FILE to read one.")
@click.option("--note", default=None, help="A note recorded with the creation.")
@click.pass_context
def new(ctx: click.Context, workflow: str, case_id: str, actor: str, on: dt.date | None,
        data: dict[str, Any] | None, note: str | None) -> None:
    """Create case CASE_ID on WORKFLOW (a bundled name or a .toml file)."""
    wf = _load_workflow(workflow)  # before the database is touched
    path = _db_path(ctx)
    existed = os.path.exists(path)
    store = _open(ctx, create=True)
    try:
        case = store.create_case(wf, case_id, actor=actor, on=on or dt.date.today(), data=data,
                                 note=note)
    except BaseException:
        store.close()
        if not existed:  # a failed command leaves no database behind
            _remove_new_database(path)
        raise
    with store:
        click.echo(f"Created case {case.id!r} on {wf.name} v{wf.version}, "
                   f"{case.history[0].on.isoformat()}, in {ids(case.state)}.")
        for line in wrap(allowed_line(case, case.awaiting(on=case.last_on)), 0, 2):
            click.echo(line)


@cli.command()
@click.argument("case_id")
@click.argument("trigger")
@click.option("--actor", required=True, help="Who takes the step.")
@click.option("--on", type=DATE, default=None, help="The date of the step (default: today).")
@click.option("--note", default=None, help="A note recorded with the step.")
@click.option("--data", type=JSON_OBJECT, default=None,
              help="Data recorded with the step (merged into the case's data): JSON or @FILE.")
@click.option("--key", default=None,
              help="An idempotency key: a retry with the same key records nothing new.")
@click.pass_context
def fire(ctx: click.Context, case_id: str, trigger: str, actor: str, on: dt.date | None,
         note: str | None, data: dict[str, Any] | None, key: str | None) -> None:
    """Take the step TRIGGER on case CASE_ID, as --actor."""
    from .errors import TransitionRefusedError

    when = on or dt.date.today()
    with _open(ctx) as store:
        case = store.case(case_id)
        before = case.version
        try:
            event = case.fire(trigger, actor=actor, on=when, note=note, data=data, key=key)
        except TransitionRefusedError as e:
            # Say what is allowed on a date that can be allowed: not one before the last event.
            last = case.last_on
            options_on = max(when, last) if last is not None else when
            raise Failure(f"{e} {allowed_line(case, case.awaiting(on=options_on))}") from e
        if case.version == before:  # a retry with a known key: the stored event came back
            click.echo(f"Already recorded as event {event.seq} (key {key!r}); nothing new.")
            return
        if event.moved:
            change = (f"left {ids(event.source - event.target)}, "
                      f"now in {ids(event.target - event.source)}")
        else:
            change = "ballot recorded; the vote goes on"
        head = (f"Case {case.id!r} event {event.seq}: {event.trigger} by {event.actor} on "
                f"{event.on.isoformat()}: {change}.")
        for line in wrap(head, 0, 2):
            click.echo(line)
        for line in wrap(allowed_line(case, case.awaiting(on=when)), 0, 2):
            click.echo(line)


# --------------------------------------------------------------------------- cases, history


@cli.command()
@click.option("--workflow", default=None, help="Only cases on this workflow (its name).")
@click.option("--state", default=None,
              help="Only cases with this state active (a leaf or a composite state).")
@json_option
@click.pass_context
def cases(ctx: click.Context, workflow: str | None, state: str | None, as_json: bool) -> None:
    """List the cases: id, workflow, events, last date and state."""
    with _open(ctx) as store:
        found = store.cases(workflow=workflow, state=state)
    if as_json:
        _echo_json([c.to_dict() for c in found])
        return
    if not found:
        click.echo("No cases.")
        return
    id_width = min(max(len(c.case_id) for c in found), 24)
    for c in found:
        end = ", final" if c.is_final else ""
        head = (f"{c.case_id:<{id_width}}  {c.workflow} v{c.workflow_version}  "
                f"{c.version} events, last {c.last_on.isoformat()}{end}")
        for line in wrap(head, 0, 4) + wrap(f"state: {', '.join(sorted(c.state))}", 4, 6):
            click.echo(line)


@cli.command()
@click.argument("case_id")
@json_option
@click.pass_context
def history(ctx: click.Context, case_id: str, as_json: bool) -> None:
    """Every event of a case, oldest first."""
    with _open(ctx) as store:
        case = store.case(case_id)
    if as_json:
        _echo_json([e.to_dict() for e in case.history])
        return
    for line in wrap(f"Case {case.id!r} on {case.workflow} v{case.workflow_version}, "
                      f"{len(case.history)} events:", 0, 2):
        click.echo(line)
    for e in case.history:
        for line in event_lines(e.to_dict()):
            click.echo(line)


# --------------------------------------------------------------------------- show
@cli.command()
@click.argument("case_id")
@click.option("--as-of", "as_of", type=DATE, default=None,
              help="Show the case as it stood on this date (events dated on or before).")
@click.option("--on", type=DATE, default=None,
              help="Evaluate the allowed steps on this date (default: today, or --as-of).")
@json_option
@click.pass_context
def show(ctx: click.Context, case_id: str, as_of: dt.date | None, on: dt.date | None,
         as_json: bool) -> None:
    """Where a case stands: regions, decisions, who is awaited, what may happen next."""
    with _open(ctx) as store:
        case = store.case(case_id, as_of=as_of)
        doc = case_summary(case, on=on)
    if as_json:
        _echo_json(doc)
    else:
        click.echo(summary_text(doc))


# --------------------------------------------------------------------------- due


@cli.command()
@click.option("--on", type=DATE, default=None, help="The date to ask on (default: today).")
@click.option("--within", "within", type=click.IntRange(0, 36_500), default=14,
              show_default=True, help="Also list what falls due within this many days.")
@click.option("--as-of", "as_of", type=DATE, default=None,
              help="Count only what was recorded on or before this date.")
@json_option
@click.pass_context
def due(ctx: click.Context, on: dt.date | None, within: int, as_of: dt.date | None,
        as_json: bool) -> None:
    """What is overdue or due soon across open cases: deadlines and expected steps."""
    with _open(ctx) as store:
        items = store.due(on=on, within_days=within, as_of=as_of)
    if as_json:
        _echo_json([i.to_dict() for i in items])
        return
    if not items:
        click.echo(f"Nothing overdue or due within {within} days.")
        return
    for i in items:
        left = f"{-i.days_left} days overdue" if i.days_left < 0 else f"{i.days_left} days left"
        click.echo(f"{i.due.isoformat()}  {i.case_id}  {i.kind} {i.step}: {i.status}, {left}")
        for line in wrap(f"by {', '.join(i.actors)}: {i.label}", 12, 14):
            click.echo(line)


# --------------------------------------------------------------------------- tick


@cli.command()
@click.option("--on", type=DATE, default=None,
              help="Take what has fallen due on or before this date (default: today).")
@json_option
@click.pass_context
def tick(ctx: click.Context, on: dt.date | None, as_json: bool) -> None:
    """Let the clock take every timed step that has fallen due, in date order, once each.

    Safe to run again and from several processes at once (cron: daily).
    """
    with _open(ctx) as store:
        report = store.tick(on=on)
    if as_json:
        _echo_json(report.to_dict())
        return
    click.echo(report.describe())


# --------------------------------------------------------------------------- allowed


@cli.command()
@click.argument("case_id")
@click.option("--actor", default=None, help="Only what this actor may do.")
@click.option("--on", type=DATE, default=None, help="Evaluate on this date (default: today).")
@json_option
@click.pass_context
def allowed(ctx: click.Context, case_id: str, actor: str | None, on: dt.date | None,
            as_json: bool) -> None:
    """What may happen next on a case, and why the other steps may not."""
    when = on or dt.date.today()
    with _open(ctx) as store:
        case = store.case(case_id)
        wf = case.definition
        if actor is not None:
            from .case import check_actor

            actor = check_actor(actor)
            permitted = case.allowed(actor=actor, on=when)
            steps = {t: [actor] for t in permitted}
        else:
            steps = by_trigger(case.awaiting(on=when))
        allowed_out = [{"trigger": t, "label": step_label(wf, t, case), "actors": actors}
                       for t, actors in steps.items()]
        refused_out: list[dict[str, Any]] = []
        for trigger in case.steps():
            if trigger in steps:
                continue
            t = case.transition(trigger)
            actors = [actor] if actor is not None else list(t.actors if t else ())
            refused_out.append({
                "trigger": trigger, "label": step_label(wf, trigger, case),
                "why_not": {a: case.why_not(trigger, actor=a, on=when) for a in actors},
            })
    if as_json:
        _echo_json({"case_id": case.id, "on": when.isoformat(), "actor": actor,
                    "state": sorted(case.state), "is_final": case.is_final,
                    "allowed": allowed_out, "not_allowed": refused_out})
        return
    who = f" for {actor}" if actor else ""
    for line in wrap(f"Case {case.id!r} on {when.isoformat()}{who}, in "
                      f"{', '.join(sorted(case.state))}.", 0, 2):
        click.echo(line)
    if case.is_final:
        click.echo("The case has ended: nothing more can happen.")
        return
    click.echo("Allowed:")
    if not allowed_out:
        click.echo("  nothing")
    for a in allowed_out:
        label = f": {a['label']}" if a["label"] else ""
        for line in wrap(f"{a['trigger']} by {', '.join(a['actors'])}{label}", 2, 6):
            click.echo(line)
    if refused_out:
        click.echo("Not allowed:")
    for r in refused_out:
        groups: dict[tuple[str, ...], list[str]] = {}
        for a, reasons in r["why_not"].items():
            groups.setdefault(tuple(reasons), []).append(a)
        for reasons, actors in groups.items():
            for line in wrap(f"{r['trigger']} by {', '.join(actors)}: {'; '.join(reasons)}",
                              2, 6):
                click.echo(line)


# --------------------------------------------------------------------------- verify, heads


def _read_heads(path: str) -> dict[str, Any]:
    try:
        raw = Path(path).read_bytes()
        value = json.loads(raw.decode("utf-8"))
    except OSError as e:
        raise click.BadParameter(f"can't read {path!r}: {e.strerror or e}.",
                                 param_hint="'--heads'") from e
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise click.BadParameter(f"{path!r} is not a JSON file written by "
                                 f"'approvalflow heads': {e}.", param_hint="'--heads'") from e
    if not isinstance(value, dict):
        raise click.BadParameter(f"{path!r} holds a JSON {type(value).__name__}; "
                                 f"'approvalflow heads' writes an object "
                                 f"{{case_id: {{\"seq\": n, \"hash\": h}}}}.",
                                 param_hint="'--heads'")
    return value


@cli.command()
@click.option("--heads", "heads_file", type=click.Path(dir_okay=False), default=None,
              help="Also check the heads exported earlier with 'approvalflow heads'.")
@click.option("--strict", is_flag=True,
              help="Fail when a check can't be made here (a guard not registered).")
@json_option
@click.pass_context
def verify(ctx: click.Context, heads_file: str | None, strict: bool, as_json: bool) -> None:
    """Check the whole log (hash chains, workflow texts, every step re-decided, the
    current-state table); exit 1 on any problem."""
    heads = _read_heads(heads_file) if heads_file is not None else None
    with _open(ctx) as store:
        report = store.verify(heads=heads, strict=strict)
        path = store.path
    if as_json:
        _echo_json(report.to_dict())
    else:
        for problem in report.problems:
            for line in wrap(problem, 0, 2):
                click.echo(line)
        for what, n in sorted(report.unchecked.items()):
            for line in wrap(f"not re-checked: {what}, {n} time{'s' if n != 1 else ''}", 0, 2):
                click.echo(line)
        if report.ok:
            extra = f", matching {len(heads)} exported heads" if heads is not None else ""
            click.echo(f"ok: {report.cases} cases, {report.events} events, no problems{extra}.")
    if not report.ok:
        n = len(report.problems)
        raise Failure(f"{n} problem{'s' if n != 1 else ''} in {path!r} "
                      f"({report.cases} cases, {report.events} events).")


@cli.command()
@click.pass_context
def heads(ctx: click.Context) -> None:
    """Print each case's last event number and hash, as JSON, to keep elsewhere."""
    with _open(ctx) as store:
        _echo_json(store.heads())


# --------------------------------------------------------------------------- demo


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Build the Mimerskvarteret case from the seed's facts and show where it stands.

    Writes ./mimerskvarteret-demo.db (or --db PATH), rebuilding it when rerun; it
    refuses a database that holds other cases.
    """
    from .demo import DEFAULT_DB as DEMO_DB
    from .demo import describe, run_demo

    path = ctx.obj["db"] or DEMO_DB
    case = run_demo(path)
    try:
        click.echo(describe(case))
        click.echo("")
        click.echo(f"Recorded in {path}. Explore it with:")
        click.echo(f"  approvalflow --db {path} show {case.id}")
    finally:
        case._store.close()  # type: ignore[union-attr]


# --------------------------------------------------------------------------- diagram


@cli.command()
@click.argument("workflow")
@click.option("--case", "case_id", default=None,
              help="Highlight this case's active states (read from --db).")
@click.option("--format", "fmt", type=click.Choice(["mermaid", "dot"]), default="mermaid",
              show_default=True, help="Mermaid stateDiagram-v2 text, or Graphviz dot.")
@click.pass_context
def diagram(ctx: click.Context, workflow: str, case_id: str | None, fmt: str) -> None:
    """Draw WORKFLOW (a bundled name or a .toml file) as Mermaid or dot text."""
    from . import diagram as drawing

    wf = _load_workflow(workflow)
    case = None
    if case_id is not None:
        with _open(ctx) as store:
            case = store.case(case_id)
        if case.workflow != wf.name:
            raise Failure(f"Case {case.id!r} runs on workflow {case.workflow!r}, not "
                          f"{wf.name!r}; draw {case.workflow!r} to highlight it.")
    draw = drawing.to_dot if fmt == "dot" else drawing.to_mermaid
    click.echo(draw(wf, case=case))


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI: errors print ``Error: ...`` (exit 1), usage errors exit 2."""
    try:
        return cli.main(args=argv, prog_name="approvalflow")
    except BrokenPipeError:
        # the reader went away (``approvalflow history x | head``): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except Exception as e:  # a bug: still one line, never a traceback
        click.echo(f"Error: unexpected {type(e).__name__}: {_printable(str(e))} (this is a "
                   f"bug in approvalflow; please report it with the command you ran).",
                   err=True)
        sys.exit(1)
