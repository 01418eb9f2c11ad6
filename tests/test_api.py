"""The public API: every exported name resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import approvalflow as af


def test_every_exported_name_resolves() -> None:
    """Each name in approvalflow.__all__ is an attribute of the package."""
    missing = [name for name in af.__all__ if getattr(af, name, None) is None]
    assert missing == []
    assert set(af.__all__) <= set(dir(af))


def test_unknown_attribute_is_an_attribute_error() -> None:
    """Asking the package for a name it does not export raises AttributeError."""
    try:
        af.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("expected AttributeError")


def test_importing_the_cli_loads_no_engine_or_database_code() -> None:
    """Importing the CLI loads neither transitions nor sqlite3 until a command needs them."""
    code = ("import sys, approvalflow.cli; "
            "print(sorted(m for m in ('transitions', 'sqlite3', 'sqlite_utils', "
            "'approvalflow.store', 'approvalflow.engine') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"
