"""The ``approvalflow`` command: a thin shell over the library.

Every ApprovalflowError is caught in one place, ``main``, and printed as one
``Error: ...`` line on stderr with exit code 1; usage errors exit with 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from .errors import ApprovalflowError

DB_ENV = "APPROVALFLOW_DB"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
              help=f"The database file (default: ${DB_ENV}, else ./approvalflow.db).")
@click.version_option(package_name="approvalflow")
@click.pass_context
def cli(ctx: click.Context, db: str | None) -> None:
    """Inspect and drive approval cases recorded in an SQLite event log."""
    ctx.obj = {"db": db}


@cli.command()
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Build the Mimerskvarteret case from the seed's facts and show where it stands.

    Writes ./mimerskvarteret-demo.db (or --db PATH), rebuilding it when rerun; it
    refuses a database that holds other cases.
    """
    from .demo import DEFAULT_DB, describe, run_demo

    path = ctx.obj["db"] or DEFAULT_DB
    case = run_demo(path)
    try:
        click.echo(describe(case))
        click.echo("")
        click.echo(f"Recorded in {path}. Explore it with: approvalflow --db {path} show "
                   f"{case.id}")
    finally:
        case._store.close()  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> Any:
    """Run the CLI; ApprovalflowError becomes one 'Error: ...' line and exit code 1."""
    try:
        return cli.main(args=argv, prog_name="approvalflow", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except ApprovalflowError as e:
        message = str(e).replace(os.linesep, "\n")
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)
