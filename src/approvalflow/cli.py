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

from .views.summary import (
    allowed_line,
    by_trigger,
    case_summary,
    event_lines,
    ids,
    json_safe,
    step_label,
    summary_text,
    terminal_safe,
    wrap,
)

if TYPE_CHECKING:
    from .definition import Workflow
    from .store import Store

DB_ENV = "APPROVALFLOW_DB"
DEFAULT_DB = "approvalflow.db"


# --------------------------------------------------------------------------- errors


def _echo(text: str = "", *, err: bool = False) -> None:
    """Write one piece of text output; every text output of the CLI goes through here."""
    click.echo(terminal_safe(text), err=err)


class Failure(click.ClickException):
    """A failed command: one ``Error: ...`` line per line of the message, exit code 1."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        # "\n" only: splitlines() would also break at "\r", "\x85" or "\u2028" from stored
        # or guard text, and drop them instead of showing their escapes
        for line in self.message.rstrip("\n").split("\n"):
            _echo(f"Error: {line}", err=True)


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
                # one Error line per problem (a DefinitionError lists several), whatever a
                # file name or a value in it holds
                problems = getattr(e, "problems", None) or [str(e)]
                raise Failure("\n".join(one_line(cli_advice(p)) for p in problems)) from e
            if isinstance(e, OSError) and not isinstance(e, BrokenPipeError):
                where = f" {os.fsdecode(e.filename)!r}" if e.filename else ""
                raise Failure(f"Could not use{where}: {e.strerror or e}.") from e
            raise


#: Advice the library gives Python callers, and what to do instead on the command line.
_PYTHON_ADVICE = (
    (re.compile(r"([Rr])egister it with @approvalflow\.guard\(('[^']*'|\"[^\"]*\")\) "
                r"before (?:loading|firing)"),
     r"\1egister it: give the module that defines guard \2 with --guards MODULE (a module "
     r"name or a .py file) or $APPROVALFLOW_GUARDS"),
    (re.compile(r"choose another id or load it with store\.case\(\)"),
     "choose another id, or see that case with 'approvalflow show ID'"),
    (re.compile(r"create one with 'approvalflow new' or approvalflow\.open_store\(\)"),
     "create one with 'approvalflow new'"),
)


def one_line(text: str) -> str:
    """``text`` with its line breaks shown as ``\\n``: a file name or value holding one
    can't split an ``Error:`` or ``ok:`` line in two (or make up a line of its own)."""
    return text.replace("\n", "\\n")


def cli_advice(text: str) -> str:
    """A library message with its Python advice turned into command-line advice."""
    for pattern, replacement in _PYTHON_ADVICE:
        text = pattern.sub(replacement, text)
    return text


# --------------------------------------------------------------------------- parameter types


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class IsoDate(click.ParamType):  # type: ignore[type-arg]  # generic since click 8.2
    """A calendar date written ``YYYY-MM-DD``; anything else is a usage error naming it."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.date:
        if isinstance(value, dt.date):
            return value
        from .canonical import date_range_problem

        text = str(value)
        try:
            date = dt.date.fromisoformat(text) if _DATE_RE.match(text) else None
        except ValueError:
            date = None
        if date is None:
            self.fail(f"{text!r} is not a real date in the form YYYY-MM-DD "
                      f"(e.g. 2021-12-06).", param, ctx)
        problem = date_range_problem(date, "the date")
        if problem:
            self.fail(f"{problem}.", param, ctx)
        return date


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


#: The largest file --data @FILE reads.
MAX_DATA_FILE_BYTES = 1_000_000
#: The largest file verify --heads reads (about a million cases' heads).
MAX_HEADS_FILE_BYTES = 128_000_000


def _read_file(path: str, limit: int, what: str, param: click.Parameter | None,
               ctx: click.Context | None, *, hint: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, else a usage error (exit 2)."""
    from .errors import InvalidInputError
    from .files import read_regular_file

    try:
        return read_regular_file(path, limit=limit, what=what)
    except InvalidInputError as e:
        raise click.BadParameter(str(e), ctx, param, hint) from None
    except (OSError, ValueError) as e:  # ValueError: a NUL in the path
        raise click.BadParameter(f"can't read {what} {path!r}: "
                                 f"{getattr(e, 'strerror', None) or e}.", ctx, param,
                                 hint) from None


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
            raw = _read_file(path, MAX_DATA_FILE_BYTES, "the file", param, ctx)
            what = f"the file {path!r}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                self.fail(f"{what} is not UTF-8 text (bad byte at offset {e.start}).",
                          param, ctx)
        data = _parse_json(text, what, self, param, ctx)
        if not isinstance(data, dict):
            self.fail(f"{what} is a JSON {type(data).__name__}, not an object; give an object "
                      f"such as '{{\"decided_on\": \"2021-12-06\"}}'.", param, ctx)
        from .canonical import check_data
        from .errors import InvalidInputError

        try:
            return check_data(data)  # 1e999 (infinity), a lone surrogate: not storable
        except InvalidInputError as e:
            self.fail(f"{what} can't be stored: {e}", param, ctx)


DATE = IsoDate()
JSON_OBJECT = JsonObject()

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON (the shapes are in docs/cli.md).")


# --------------------------------------------------------------------------- helpers


def _echo_json(value: Any) -> None:
    click.echo(json_safe(json.dumps(value, indent=2, ensure_ascii=False)))


def _db_path(ctx: click.Context) -> str:
    """--db, else $APPROVALFLOW_DB, else ./approvalflow.db."""
    path = ctx.obj.get("db") or os.environ.get(DB_ENV) or DEFAULT_DB
    if _is_url(path):
        return str(path)
    if os.path.isdir(path):
        raise click.UsageError(f"The database {path!r} is a directory; give a file "
                               f"with --db or ${DB_ENV}.", ctx)
    return str(path)


def _is_url(path: str) -> bool:
    from .store.postgres import is_database_url  # the store's own test, scheme in any case

    return is_database_url(path)


def _open(ctx: click.Context, *, create: bool = False, readonly: bool = False) -> Store:
    """The store at the resolved path; a missing file is an error unless ``create``.

    ``readonly`` opens it read-only (the commands that only read), so a read-only file
    or folder can be inspected."""
    from .store import open_store

    path = _db_path(ctx)
    if _is_url(path):  # a PostgreSQL server: the store says what is missing there
        return open_store(path, readonly=readonly, create=create)
    if not create and not os.path.exists(path):
        raise Failure(f"There is no database at {path!r}; pass --db PATH or set "
                      f"${DB_ENV}, or create a case with 'approvalflow new'.")
    # a FIFO or a device has size 0 too: the store says what it is instead
    if not create and os.path.isfile(path) and os.path.getsize(path) == 0:
        raise Failure(f"{path!r} is an empty file, not an approvalflow database; pass --db "
                      f"with the database's path.")
    if readonly:
        from .store import MigrationNeededError

        try:
            return open_store(path, readonly=True)
        except MigrationNeededError:
            pass  # an older file: open it writable, which migrates it, as before
    return open_store(path, create=create)


def _load_workflow(name_or_path: str) -> Workflow:
    """A bundled workflow by name, or a workflow file by path."""
    from .loading import bundled_workflows, load_workflow

    if os.path.lexists(name_or_path) and not (os.path.isdir(name_or_path)
                                              and name_or_path in bundled_workflows()):
        return load_workflow(Path(name_or_path))  # a file (a FIFO or a folder: refused there)
    return load_workflow(name_or_path)


# --------------------------------------------------------------------------- the group


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", type=click.Path(dir_okay=False, readable=False), default=None,
              help=f"The database file (default: ${DB_ENV}, else ./{DEFAULT_DB}).")
@click.option("--guards", "guard_modules", multiple=True, metavar="MODULE",
              help="Import this guard module first: a module name or a .py file "
                   "(repeatable; also $APPROVALFLOW_GUARDS, comma-separated).")
@click.version_option(package_name="approvalflow")
@click.pass_context
def cli(ctx: click.Context, db: str | None, guard_modules: tuple[str, ...]) -> None:
    """Inspect and drive approval cases recorded in an SQLite event log."""
    ctx.obj = {"db": db}
    _load_guards(guard_modules)


def _load_guards(given: tuple[str, ...]) -> None:
    """Guard modules from $APPROVALFLOW_GUARDS, then --guards; installed packages' guard
    plugins are loaded the first time a workflow names a guard not registered."""
    from . import guards, plugins

    specs = [*plugins.guard_modules_from_env(), *given]
    if specs and "" not in sys.path and os.getcwd() not in sys.path:
        # a module in the current folder is importable by name, as with ``python -m``
        sys.path.append(os.getcwd())
    for spec in specs:
        plugins.load_guard_module(spec)
    guards.load_on_first_miss(plugins.load_guard_plugins)


# --------------------------------------------------------------------------- workflows


@cli.command()
@json_option
def workflows(as_json: bool) -> None:
    """List the bundled workflows: name, version and title."""
    from .loading import bundled_workflows, load_workflow

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
            _echo(line)


@cli.command()
@click.argument("items", metavar="FILE_OR_NAME...", nargs=-1, required=True)
@click.option("--explore", "explore", is_flag=True,
              help="Also walk every reachable configuration: dead steps, stuck "
                   "configurations, invariants (exit 1 unless all is proven).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="With --explore: stop after this many configurations (default 200000).")
@click.option("--json", "as_json", is_flag=True, help="With --explore: print the reports "
              "as a JSON list.")
def check(items: tuple[str, ...], explore: bool, limit: int | None, as_json: bool) -> None:
    """Validate workflow files (or bundled names); one Error line per problem."""
    from .errors import DefinitionError

    if (as_json or limit is not None) and not explore:
        raise click.UsageError("--json and --limit go with --explore.")
    if explore:
        _check_explore(items, limit, as_json)
        return
    failed = 0
    for item in items:
        try:
            wf = _load_workflow(item)
        except DefinitionError as e:
            failed += 1
            for problem in e.problems:
                _echo(f"Error: {one_line(cli_advice(problem))}", err=True)
            continue
        _echo(f"ok: {one_line(item)}: {wf.name} v{wf.version}, "
              f"{len(wf.state_defs)} states, {len(wf.transitions)} transitions")
    if failed:
        raise click.exceptions.Exit(1)


def _check_explore(items: tuple[str, ...], limit: int | None, as_json: bool) -> None:
    """``check --explore``: load each workflow, walk it whole, print the report."""
    from .errors import DefinitionError
    from .explore import DEFAULT_LIMIT

    failed = 0
    reports: list[dict[str, Any]] = []
    for item in items:
        try:
            wf = _load_workflow(item)
        except DefinitionError as e:
            failed += 1
            for problem in e.problems:
                _echo(f"Error: {one_line(cli_advice(problem))}", err=True)
            continue
        report = wf.explore(limit=limit or DEFAULT_LIMIT)
        failed += not report.ok
        if as_json:
            reports.append({"file": item, **report.to_dict()})
        else:
            head = "" if item == wf.name else f"{one_line(item)}: "
            _echo(head + report.text())
    if as_json:
        _echo_json(reports)
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
@click.option("--by", default=None, help="The person who creates it for --actor (recorded).")
@click.pass_context
def new(ctx: click.Context, workflow: str, case_id: str, actor: str, on: dt.date | None,
        data: dict[str, Any] | None, note: str | None, by: str | None) -> None:
    """Create case CASE_ID on WORKFLOW (a bundled name, a .toml file, or the name of a
    workflow stored in the database: its latest version)."""
    from .errors import CaseExistsError, DefinitionError

    path = _db_path(ctx)
    existed = _is_url(path) or os.path.exists(path)
    try:
        wf: Workflow | str = _load_workflow(workflow)  # before the database is touched
    except DefinitionError:
        if not existed or workflow.endswith(".toml") or "/" in workflow or os.sep in workflow:
            raise
        wf = workflow  # perhaps stored in the database: create_case looks it up there
    store = _open(ctx, create=True)
    try:
        case = store.create_case(wf, case_id, actor=actor, on=on or dt.date.today(), data=data,
                                 note=note, by=by)
    except CaseExistsError as e:
        store.close()
        raise Failure(f"Case {case_id!r} already exists in {path!r}; choose another id, or "
                      f"see that case with 'approvalflow show {case_id}'.") from e
    except BaseException:
        store.close()
        if not existed:  # a failed command leaves no database behind
            _remove_new_database(path)
        raise
    with store:
        _echo(f"Created case {case.id!r} on {case.workflow} v{case.workflow_version}, "
              f"{case.history[0].on.isoformat()}, in {ids(case.state)}.")
        for line in wrap(allowed_line(case, case.permitted(on=case.last_on)), 0, 2):
            _echo(line)


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
@click.option("--by", default=None,
              help="The person who takes the step for --actor (recorded; four-eyes rules "
                   "compare it).")
@click.pass_context
def fire(ctx: click.Context, case_id: str, trigger: str, actor: str, on: dt.date | None,
         note: str | None, data: dict[str, Any] | None, key: str | None,
         by: str | None) -> None:
    """Take the step TRIGGER on case CASE_ID, as --actor."""
    from .errors import TransitionRefusedError

    when = on or dt.date.today()
    with _open(ctx) as store:
        case = store.case(case_id)
        before = case.version
        try:
            event = case.fire(trigger, actor=actor, on=when, note=note, data=data, key=key,
                              by=by)
        except TransitionRefusedError as e:
            # Say what is allowed on a date that can be allowed: not one before the last event.
            last = case.last_on
            options_on = max(when, last) if last is not None else when
            options = allowed_line(case, case.permitted(on=options_on))
            # one line, whatever a guard's reason holds
            raise Failure(cli_advice(f"{e} {options}").replace("\n", " ")) from e
        if case.version == before:  # a retry with a known key: the stored event came back
            _echo(f"Already recorded as event {event.seq} (key {key!r}); nothing new.")
            return
        if event.moved:
            change = (f"left {ids(event.source - event.target)}, "
                      f"now in {ids(event.target - event.source)}")
        else:
            change = "ballot recorded; the vote goes on"
        person = f" ({event.by})" if event.by else ""
        head = (f"Case {case.id!r} event {event.seq}: {event.trigger} by {event.actor}{person} "
                f"on {event.on.isoformat()}: {change}.")
        for line in wrap(head, 0, 2):
            _echo(line)
        for line in wrap(allowed_line(case, case.permitted(on=when)), 0, 2):
            _echo(line)


# --------------------------------------------------------------------------- cases, history


@cli.command()
@click.option("--workflow", default=None, help="Only cases on this workflow (its name).")
@click.option("--state", default=None,
              help="Only cases with this state active (a leaf or a composite state).")
@click.option("--awaiting", "awaiting", default=None, metavar="ACTOR",
              help="Only cases where ACTOR may act now (see 'inbox').")
@click.option("--overdue", is_flag=True,
              help="Only cases with a deadline or expected step passed (see 'due').")
@click.option("--open/--final", "is_open", default=None,
              help="Only open cases, or only cases that have ended.")
@click.option("--data", "data", multiple=True, metavar="KEY=VALUE",
              help="Only cases whose data has VALUE at the key path KEY (e.g. "
                   "budget.total=4000000); repeat for more.")
@click.option("--since", type=DATE, default=None, help="Last event on or after this date.")
@click.option("--until", type=DATE, default=None, help="Last event on or before this date.")
@click.option("--on", type=DATE, default=None,
              help="The date --awaiting and --overdue are asked on (default: today).")
@click.option("--limit", type=click.IntRange(0, 2**62), default=None,
              help="List at most this many cases (and print the total).")
@click.option("--offset", type=click.IntRange(0, 2**62), default=0,
              help="Skip this many cases first (and print the total).")
@json_option
@click.pass_context
def cases(ctx: click.Context, workflow: str | None, state: str | None, awaiting: str | None,
          overdue: bool, is_open: bool | None, data: tuple[str, ...], since: dt.date | None,
          until: dt.date | None, on: dt.date | None, limit: int | None, offset: int,
          as_json: bool) -> None:
    """List the cases: id, workflow, events, last date and state."""
    wanted: dict[str, str] = {}
    for item in data:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE (e.g. plan=Nørrebrobyggerne).",
                                     param_hint="'--data'")
        if wanted.get(key, value) != value:  # not one of them silently dropped
            raise click.BadParameter(f"{key!r} is given twice, as {wanted[key]!r} and "
                                     f"{value!r}; give each key once.",
                                     param_hint="'--data'")
        wanted[key] = value
    with _open(ctx, readonly=True) as store:
        found = store.cases(workflow=workflow, state=state, awaiting=awaiting, overdue=overdue,
                            final=None if is_open is None else not is_open,
                            data=wanted or None, since=since, until=until, limit=limit,
                            offset=offset, on=on)
    paged = limit is not None or offset > 0
    if as_json:
        _echo_json(found.to_dict() if paged else [c.to_dict() for c in found])
        return
    if not found:
        _echo("No cases." if not paged else f"No cases here; {found.total} in all.")
        return
    id_width = min(max(len(c.case_id) for c in found), 24)
    for c in found:
        end = ", final" if c.is_final else ""
        head = (f"{c.case_id:<{id_width}}  {c.workflow} v{c.workflow_version}  "
                f"{c.version} events, last {c.last_on.isoformat()}{end}")
        for line in wrap(head, 0, 4) + wrap(f"state: {', '.join(sorted(c.state))}", 4, 6):
            _echo(line)
    if paged:
        _echo(f"Cases {offset + 1}-{offset + len(found)} of {found.total}.")


@cli.command()
@click.argument("actor")
@click.option("--on", type=DATE, default=None, help="The date to ask on (default: today).")
@json_option
@click.pass_context
def inbox(ctx: click.Context, actor: str, on: dt.date | None, as_json: bool) -> None:
    """What ACTOR may do now, in every case: the case and the steps."""
    with _open(ctx, readonly=True) as store:
        found = store.awaiting(actor, on=on)
    if as_json:
        _echo_json([a.to_dict() for a in found])
        return
    when = (on or dt.date.today()).isoformat()
    if not found:
        _echo(f"Nothing awaits {actor} on {when}.")
        return
    id_width = min(max(len(a.case_id) for a in found), 24)
    for a in found:
        for line in wrap(f"{a.case_id:<{id_width}}  {a.workflow} v{a.workflow_version}  "
                         f"last {a.last_on.isoformat()}: {', '.join(a.triggers)}", 0, 4):
            _echo(line)
    n = len(found)
    _echo(f"{n} case{'s await' if n != 1 else ' awaits'} {actor} on {when}.")


@cli.command()
@click.argument("case_id")
@json_option
@click.pass_context
def history(ctx: click.Context, case_id: str, as_json: bool) -> None:
    """Every event of a case, oldest first."""
    with _open(ctx, readonly=True) as store:
        case = store.case(case_id)
    if as_json:
        _echo_json([e.to_dict() for e in case.history])
        return
    for line in wrap(f"Case {case.id!r} on {case.workflow} v{case.workflow_version}, "
                      f"{len(case.history)} events:", 0, 2):
        _echo(line)
    for e in case.history:
        for line in event_lines(e.to_dict()):
            _echo(line)


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
    with _open(ctx, readonly=True) as store:
        case = store.case(case_id, as_of=as_of)
        doc = case_summary(case, on=on)
    if as_json:
        _echo_json(doc)
    else:
        _echo(cli_advice(summary_text(doc)))


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
    with _open(ctx, readonly=True) as store:
        items = store.due(on=on, within_days=within, as_of=as_of)
    if as_json:
        _echo_json([i.to_dict() for i in items])
        return
    if not items:
        _echo(f"Nothing overdue or due within {within} days.")
        return
    for i in items:
        left = f"{-i.days_left} days overdue" if i.days_left < 0 else f"{i.days_left} days left"
        _echo(f"{i.due.isoformat()}  {i.case_id}  {i.kind} {i.step}: {i.status}, {left}")
        for line in wrap(f"by {', '.join(i.actors)}: {i.label}", 12, 14):
            _echo(line)


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
    _echo(report.describe())


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
    with _open(ctx, readonly=True) as store:
        case = store.case(case_id)
        wf = case.definition
        if actor is not None:
            from .case import check_actor

            actor = check_actor(actor)
            permitted = case.allowed(actor=actor, on=when)
            steps = {t: [actor] for t in permitted}
        else:
            steps = by_trigger(case.permitted(on=when))
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
        _echo(line)
    if case.is_final:
        _echo("The case has ended: nothing more can happen.")
        return
    _echo("Allowed:")
    if not allowed_out:
        _echo("  nothing")
    for a in allowed_out:
        label = f": {a['label']}" if a["label"] else ""
        for line in wrap(f"{a['trigger']} by {', '.join(a['actors'])}{label}", 2, 6):
            _echo(line)
    if refused_out:
        _echo("Not allowed:")
    for r in refused_out:
        groups: dict[tuple[str, ...], list[str]] = {}
        for a, reasons in r["why_not"].items():
            groups.setdefault(tuple(reasons), []).append(a)
        for reasons, actors in groups.items():
            for line in wrap(cli_advice(f"{r['trigger']} by {', '.join(actors)}: "
                                        f"{'; '.join(reasons)}"), 2, 6):
                _echo(line)


# --------------------------------------------------------------------------- verify, heads


_HASH_RE = re.compile(r"^[0-9a-f]{64}\Z")
_MAX_SEQ = 2**63 - 1


def _read_heads(path: str) -> dict[str, Any]:
    """The heads file written by ``approvalflow heads``, checked; else a usage error (exit 2)."""
    hint = "'--heads'"
    raw = _read_file(path, MAX_HEADS_FILE_BYTES, "the heads file", None, None, hint=hint)
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise click.BadParameter(f"{path!r} is not a JSON file written by "
                                 f"'approvalflow heads': {e}.", param_hint=hint) from e
    shape = "{case_id: {\"seq\": n, \"hash\": h}}"
    if not isinstance(value, dict):
        raise click.BadParameter(f"{path!r} holds a JSON {type(value).__name__}; "
                                 f"'approvalflow heads' writes an object {shape}.",
                                 param_hint=hint)
    for case_id, head in value.items():
        seq = head.get("seq") if isinstance(head, dict) else None
        digest = head.get("hash") if isinstance(head, dict) else None
        if not isinstance(head, dict) or set(head) != {"seq", "hash"}:
            problem = f"is {_short(head)}, not an object with exactly 'seq' and 'hash'"
        elif isinstance(seq, bool) or not isinstance(seq, int) or not 1 <= seq <= _MAX_SEQ:
            problem = (f"has seq {_short(seq)}; a seq is a whole number from 1 to "
                       f"{_MAX_SEQ}")
        elif not isinstance(digest, str) or not _HASH_RE.match(digest):
            problem = f"has hash {_short(digest)}; a hash is 64 lowercase hex digits"
        else:
            continue
        raise click.BadParameter(f"{path!r}: the head of case {_short(case_id)} {problem} "
                                 f"('approvalflow heads' writes {shape}).", param_hint=hint)
    return value


def _short(value: object) -> str:
    from .canonical import shortened

    return shortened(repr(value))


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
    with _open(ctx, readonly=True) as store:
        report = store.verify(heads=heads, strict=strict)
        path = store.where
    if as_json:
        _echo_json(report.to_dict())
    else:
        for problem in report.problems:
            for line in wrap(problem, 0, 2):
                _echo(line)
        for what, n in sorted(report.unchecked.items()):
            for line in wrap(f"not re-checked: {what}, {n} time{'s' if n != 1 else ''}", 0, 2):
                _echo(line)
        if report.ok:
            extra = f", matching {len(heads)} exported heads" if heads is not None else ""
            _echo(f"ok: {report.cases} cases, {report.events} events, no problems{extra}.")
    if not report.ok:
        n = len(report.problems)
        raise Failure(f"{n} problem{'s' if n != 1 else ''} in {path!r} "
                      f"({report.cases} cases, {report.events} events).")


@cli.command()
@json_option
@click.pass_context
def rebuild(ctx: click.Context, as_json: bool) -> None:
    """Recompute the projection tables (inbox, due, case data) from the log."""
    with _open(ctx) as store:
        counts = store.rebuild()
    if as_json:
        _echo_json(counts)
        return
    rows = ", ".join(f"{table} {n}" for table, n in counts.items() if table != "cases")
    click.echo(f"Rebuilt the projections of {counts['cases']} cases (rows: {rows}).")


@cli.command()
@click.pass_context
def heads(ctx: click.Context) -> None:
    """Print each case's last event number and hash, as JSON, to keep elsewhere."""
    with _open(ctx, readonly=True) as store:
        _echo_json(store.heads())


# --------------------------------------------------------------------------- timeline


@cli.command()
@click.argument("case_ids", nargs=-1, metavar="[CASE_ID]...")
@click.option("--all", "all_cases", is_flag=True, help="One row per case in the database.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the SVG to this file (default: standard output).")
@click.option("--on", type=IsoDate(), default=None, help="The day it is drawn as of.")
@click.pass_context
def timeline(ctx: click.Context, case_ids: tuple[str, ...], all_cases: bool,
             output: str | None, on: dt.date | None) -> None:
    """Draw a case (or several, one row each) on a date axis, as SVG."""
    if bool(case_ids) == all_cases:
        raise click.UsageError("Name a case (or several, one row each), or pass --all; "
                               "not both.", ctx)
    with _open(ctx, readonly=True) as store:
        if len(case_ids) == 1:
            picture = store.case(case_ids[0]).timeline(on=on)
        else:
            picture = store.timeline(list(case_ids) if case_ids else None, on=on)
    if output is None:
        click.echo(picture.text, nl=False)
    else:
        try:
            picture.save(output)
        except OSError as e:  # a full disk: the error names no file by itself
            raise Failure(f"Could not write {output!r}: {e.strerror or e}.") from e
        _echo(f"wrote {output}")


# --------------------------------------------------------------------------- migrate


def _mapping(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        old, eq, new = pair.partition("=")
        if not eq or not old or not new:
            raise click.BadParameter(f"{pair!r} is not OLD=NEW (two state ids).",
                                     param_hint="'--map'")
        out[old] = new
    return out


@cli.command()
@click.option("--to", "to", required=True, metavar="WORKFLOW",
              help="The version to move to: a file, a bundled name, or NAME@VERSION stored "
                   "in the database (to move back).")
@click.option("--map", "pairs", multiple=True, metavar="OLD=NEW",
              help="Map an old state id to a new one (repeatable); others keep their id.")
@click.option("--case", "case_ids", multiple=True, metavar="ID",
              help="A case to move (repeatable).")
@click.option("--all", "all_cases", is_flag=True,
              help="Every open case of that workflow on another version.")
@click.option("--ballots", type=click.Choice(["keep", "reset"]), default="keep",
              show_default=True, help="What happens to the ballots of open votes.")
@click.option("--dry-run", is_flag=True, help="Only say what would happen; write nothing.")
@click.option("--actor", default=None, help="Who records the migration.")
@click.option("--on", type=IsoDate(), default=None, help="Its date (YYYY-MM-DD).")
@click.option("--note", default=None, help="Why the cases move.")
@json_option
@click.pass_context
def migrate(ctx: click.Context, to: str, pairs: tuple[str, ...], case_ids: tuple[str, ...],
            all_cases: bool, ballots: str, dry_run: bool, actor: str | None,
            on: dt.date | None, note: str | None, as_json: bool) -> None:
    """Move running cases to another version of their workflow (docs/versioning.md)."""
    if bool(case_ids) == all_cases:
        raise click.UsageError("Name the cases with --case ID (repeatable), or pass --all.",
                               ctx)
    if not dry_run and (actor is None or on is None):
        raise click.UsageError("A migration is recorded: give --actor and --on (or "
                               "--dry-run to only plan it).", ctx)
    target: Any = _load_workflow(to) if os.path.isfile(to) else to
    mapping = _mapping(pairs)
    cases = list(case_ids) if case_ids else None
    with _open(ctx, readonly=dry_run) as store:
        if dry_run:
            plan = store.plan_migration(target, cases=cases, mapping=mapping, ballots=ballots)
        else:
            assert actor is not None and on is not None
            with _progress() as progress:
                plan = store.migrate(target, cases=cases, mapping=mapping, ballots=ballots,
                                     actor=actor, on=on, note=note, progress=progress)
    if as_json:
        _echo_json({**plan.to_dict(), "dry_run": dry_run})
        return
    verb = "would move" if dry_run else "moved"
    for p in plan.cases:
        if p.can_move:
            _echo(f"{p.case_id}: {verb} from version {p.from_version} to "
                       f"{p.to_version}, in {ids(sorted(p.target or ()))}")
        else:
            for line in wrap(f"{p.case_id}: stays: " + "; ".join(p.reasons), 0, 2):
                _echo(line)
    _echo(f"{len(plan.movable)} case(s) {verb} to {plan.workflow} version "
               f"{plan.to_version}, {len(plan.refused)} left as they are.")


@contextlib.contextmanager
def _progress() -> Any:
    """A progress bar on a terminal (stderr) for a long migration; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label="Migrating", file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
@cli.command()
@click.argument("source")
@click.argument("dest")
@json_option
def copy(source: str, dest: str, as_json: bool) -> None:
    """Copy the whole log from SOURCE to the empty store DEST (each a SQLite file or a
    postgresql:// URL), with the same hashes; verify the copy. See docs/deployment.md."""
    from .store import open_store

    if not _is_url(source) and not os.path.isfile(source):
        raise Failure(f"There is no database at {source!r}; give a SQLite file or a "
                      f"postgresql:// URL.")
    if not _is_url(dest) and os.path.isdir(dest):
        raise Failure(f"{dest!r} is a directory; give a new SQLite file or a postgresql:// "
                      f"URL.")
    with open_store(source, create=False) as src:
        report = src.copy_to(dest)
    if as_json:
        _echo_json(report.to_dict())
    else:
        for problem in report.verified.problems:
            for line in wrap(problem, 0, 2):
                _echo(line)
        _echo(f"Copied {report.source!r} to {report.dest!r}: {report.workflows} workflow "
              f"version(s), {report.cases} cases, {report.events} events"
              + (", verified ok." if report.verified.ok else "."))
    if not report.verified.ok:
        raise Failure(f"The copy {report.dest!r} has {len(report.verified.problems)} "
                      f"problems.")


@cli.command()
@click.argument("dest", type=click.Path(dir_okay=False, readable=False))
@click.option("--force", is_flag=True, help="Replace DEST if it exists.")
@click.pass_context
def backup(ctx: click.Context, dest: str, force: bool) -> None:
    """Copy the live database to DEST with SQLite's online backup, then verify the copy."""
    from .store import open_store

    with _open(ctx, readonly=True) as store:
        written = store.backup(dest, force=force)
        source = store.where
    with open_store(written, readonly=True) as copy:
        report = copy.verify()
    if not report.ok:
        for problem in report.problems:
            for line in wrap(problem, 0, 2):
                _echo(line)
        raise Failure(f"The copy {dest!r} of {source!r} has {len(report.problems)} problems.")
    _echo(f"Backed up {source!r} to {dest!r}: {report.cases} cases, {report.events} events, "
          f"verified ok.")


# --------------------------------------------------------------------------- tail


def _tail_line(e: Any) -> str:
    person = f" ({e.by})" if e.by else ""
    kind = "" if e.kind == "fire" else f"[{e.kind}] "
    return (f"{e.position:>6}  {e.case_id} #{e.seq}  {e.on.isoformat()}  {kind}{e.trigger} "
            f"by {e.actor}{person}: {', '.join(sorted(e.target)) or '-'}")


@cli.command()
@click.option("--after", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
              help="Start after this feed position (the last one you handled).")
@click.option("--follow", is_flag=True,
              help="Keep running: print each new event as it is committed (Ctrl-C ends).")
@json_option
@click.pass_context
def tail(ctx: click.Context, after: int, follow: bool, as_json: bool) -> None:
    """Print the events of every case in commit order (the feed), one line each."""
    from .store.feed import follow as follow_feed

    def emit(e: Any) -> None:
        if as_json:
            click.echo(json_safe(json.dumps(e.to_dict(), ensure_ascii=False, sort_keys=True)))
        else:
            _echo(_tail_line(e))
        sys.stdout.flush()  # a reader at the other end of a pipe sees each event at once

    with _open(ctx, readonly=True) as store:
        if not follow:
            while events := store.feed(after=after, limit=1000):
                for e in events:
                    emit(e)
                after = events[-1].position or after
            return
        try:
            for e in follow_feed(store, after):
                emit(e)
        except KeyboardInterrupt:  # Ctrl-C is how a follower is meant to end
            return


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
        _echo(describe(case))
        _echo("")
        last = case.history[-1].on.isoformat()
        _echo(f"Recorded in {path}. Explore it with:")
        _echo(f"  approvalflow --db {path} show {case.id} --on {last}")
        _echo(f"  (the record ends on {last}; without --on, show answers as of today)")
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
    from .views import diagram as drawing

    wf = _load_workflow(workflow)
    case = None
    if case_id is not None:
        with _open(ctx, readonly=True) as store:
            case = store.case(case_id)
        if case.workflow != wf.name:
            raise Failure(f"Case {case.id!r} runs on workflow {case.workflow!r}, not "
                          f"{wf.name!r}; draw {case.workflow!r} to highlight it.")
    draw = drawing.to_dot if fmt == "dot" else drawing.to_mermaid
    _echo(draw(wf, case=case))


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
        _echo(f"Error: unexpected {type(e).__name__}: {e} (this is a "
              f"bug in approvalflow; please report it with the command you ran).",
              err=True)
        sys.exit(1)
