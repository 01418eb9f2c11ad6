"""Guard modules from outside: by name or path (``--guards``), and from installed packages.

A guard is a Python function registered under a name (:mod:`approvalflow.guards`); a
module that defines guards registers them when it is imported. This module imports
such modules on request:

- :func:`load_guard_module`: one module, given as an importable name
  (``"mygrants.guards"``) or as the path of a ``.py`` file;
- :func:`load_guard_plugins`: every module that installed packages declare in the
  entry-point group ``approvalflow.guards``, e.g. in the package's ``pyproject.toml``::

      [project.entry-points."approvalflow.guards"]
      mygrants = "mygrants.guards"

The command line calls both before a command runs (``--guards`` and
``$APPROVALFLOW_GUARDS`` for the first); an application calls
:func:`load_guard_plugins` once at start-up. See docs/integration.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import ApprovalflowError, PluginError

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_guard_module", "load_guard_plugins",
           "guard_modules_from_env", "GUARDS_ENV"]

#: The entry-point group installed packages declare their guard modules in.
ENTRY_POINT_GROUP = "approvalflow.guards"
#: The environment variable the command line reads guard modules from (comma-separated).
GUARDS_ENV = "APPROVALFLOW_GUARDS"

_LOADED_PLUGINS: dict[str, str] = {}  # entry-point name -> what it loaded


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_guard_module(spec: str) -> ModuleType:
    """Import the guard module ``spec`` (a module name, or a path to a ``.py`` file), so
    the guards it defines are registered. Importing one twice is harmless."""
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"A guard module is a module name or a path to a .py file, not "
                          f"{spec!r}.")
    spec = spec.strip()
    if _looks_like_path(spec):
        return _load_file(Path(spec))
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name is not None and spec.startswith(e.name):
            raise PluginError(
                f"Could not import the guard module {spec!r}: there is no module "
                f"{e.name!r} on the import path. Give an importable module name, or the "
                f"path to its .py file.") from e
        raise PluginError(f"Could not import the guard module {spec!r}: {e}.") from e
    except ApprovalflowError as e:
        raise PluginError(f"The guard module {spec!r} failed while it was imported: {e}") from e
    except Exception as e:  # the module's own code failed
        raise PluginError(f"The guard module {spec!r} failed while it was imported: "
                          f"{type(e).__name__}: {e}.") from e


def _load_file(path: Path) -> ModuleType:
    resolved = path.resolve()
    if not resolved.is_file():
        raise PluginError(f"The guard module {str(path)!r} is not a file; give the path to a "
                          f".py file, or an importable module name.")
    if resolved.suffix != ".py":
        raise PluginError(f"The guard module {str(path)!r} is not a .py file.")
    # one module per file, under a name no ordinary import uses
    name = "approvalflow_guards_" + "".join(c if c.isalnum() else "_" for c in str(resolved))
    loaded = sys.modules.get(name)
    if loaded is not None:
        return loaded
    module_spec = importlib.util.spec_from_file_location(name, resolved)
    if module_spec is None or module_spec.loader is None:
        raise PluginError(f"The guard module {str(path)!r} can't be imported as Python.")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException as e:
        del sys.modules[name]
        if not isinstance(e, Exception):
            raise
        what = str(e) if isinstance(e, ApprovalflowError) else f"{type(e).__name__}: {e}."
        raise PluginError(f"The guard module {str(path)!r} failed while it was imported: "
                          f"{what}") from e
    return module


def guard_modules_from_env(environ: dict[str, str] | None = None) -> list[str]:
    """The guard modules ``$APPROVALFLOW_GUARDS`` names (comma-separated), in order."""
    value = (os.environ if environ is None else environ).get(GUARDS_ENV, "")
    return [part.strip() for part in value.split(",") if part.strip()]


def load_guard_plugins() -> dict[str, str]:
    """Import every guard module installed packages declare (entry-point group
    ``approvalflow.guards``), once per process; returns entry-point name -> its value.

    An entry point names a module (importing it registers its guards) or a function,
    which is called with no arguments to register them.
    """
    from importlib.metadata import entry_points  # only when asked: it scans the installs

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in _LOADED_PLUGINS:
            continue
        where = f"the entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP!r}"
        where += f", package {ep.dist.name!r})" if ep.dist is not None else ")"
        try:
            obj = ep.load()
            if callable(obj) and not isinstance(obj, ModuleType):
                obj()
        except Exception as e:
            what = str(e) if isinstance(e, ApprovalflowError) else f"{type(e).__name__}: {e}"
            raise PluginError(f"Could not load the guards of {where}: {what}. Fix or "
                              f"uninstall that package.") from e
        _LOADED_PLUGINS[ep.name] = ep.value
    return dict(_LOADED_PLUGINS)
