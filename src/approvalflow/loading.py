"""Loading a workflow: read the TOML file, parse it, build the model and check it.

Above the model (:mod:`.definition`) and the checks (:mod:`.validation`): a workflow
that loads is a workflow that is sound, else :class:`~approvalflow.errors.DefinitionError`
names the file and every problem. ``approvalflow.load_workflow`` and its siblings are
these functions.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from .definition import ID_RE, Workflow
from .errors import DefinitionError, InvalidInputError
from .files import read_regular_file
from .validation import Builder

__all__ = ["load_workflow", "loads_workflow", "bundled_workflows", "bundled_workflow_path",
           "MAX_FILE_BYTES", "MAX_NAME_LENGTH"]

MAX_FILE_BYTES = 1_000_000
#: The longest workflow name or path load_workflow takes (PATH_MAX on Linux).
MAX_NAME_LENGTH = 4096


def _workflows_dir() -> Path:
    from importlib import resources  # only when a bundled workflow is looked up

    packaged = resources.files("approvalflow") / "workflows"
    if packaged.is_dir():
        return Path(str(packaged))
    # A source checkout or an editable install: the repository's workflows/ folder.
    return Path(__file__).resolve().parents[2] / "workflows"


def bundled_workflows() -> list[str]:
    """Names of the workflows that ship with approvalflow, sorted."""
    folder = _workflows_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.toml"))


def bundled_workflow_path(name: str) -> Path:
    """The file of the bundled workflow ``name``."""
    path = _workflows_dir() / f"{name}.toml"
    if not path.is_file():
        raise DefinitionError(
            f"There is no bundled workflow {name!r}; bundled: "
            f"{', '.join(bundled_workflows()) or '(none)'}. Pass a path to load your own file."
        )
    return path


def load_workflow(name_or_path: str | os.PathLike[str], *, strict_guards: bool = True) -> Workflow:
    """Load and validate a workflow: a bundled name (``"boligsocial-helhedsplan"``) or a path.

    ``strict_guards=False`` accepts guard names that are not registered yet; such a
    guard refuses its step with a reason until it is registered.
    """
    if not isinstance(name_or_path, str | os.PathLike):
        raise DefinitionError(f"A workflow is named by a bundled name or a path, not "
                              f"{type(name_or_path).__name__} {name_or_path!r}.")
    text_name = os.fspath(name_or_path)
    if not isinstance(text_name, str):
        text_name = os.fsdecode(text_name)
    if "\x00" in text_name or len(text_name) > MAX_NAME_LENGTH:
        shown = text_name if len(text_name) <= 80 else text_name[:80] + "..."
        raise DefinitionError(f"{shown!r} can't name a workflow: a name or path has no NUL "
                              f"character and at most {MAX_NAME_LENGTH} characters.")
    looks_like_path = (
        isinstance(name_or_path, os.PathLike) or text_name.endswith(".toml")
        or os.sep in text_name or "/" in text_name
    )
    if not looks_like_path and not ID_RE.match(text_name):
        raise DefinitionError(
            f"There is no bundled workflow {text_name!r}; bundled: "
            f"{', '.join(bundled_workflows()) or '(none)'}. Pass a path to load your own file.")
    path = Path(text_name) if looks_like_path else bundled_workflow_path(text_name)
    try:
        raw = read_regular_file(path, limit=MAX_FILE_BYTES, what="the workflow file")
    except FileNotFoundError:
        raise DefinitionError(f"{path}: no such workflow file. Bundled workflows: "
                              f"{', '.join(bundled_workflows())}.") from None
    except InvalidInputError as e:
        raise DefinitionError(f"{path}: {e}") from None
    except OSError as e:
        raise DefinitionError(f"{path}: can't read the file: {e.strerror or e}.") from e
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DefinitionError(f"{path}: the file is UTF-16 text (it starts with a UTF-16 byte "
                              f"order mark); a workflow file is UTF-8: save it as UTF-8.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DefinitionError(f"{path}: the file is not UTF-8 text "
                              f"(bad byte at offset {e.start}).") from e
    return loads_workflow(text, source=str(path), strict_guards=strict_guards)


def loads_workflow(text: str, *, source: str = "<string>", strict_guards: bool = True) -> Workflow:
    """Parse and validate a workflow from TOML text; ``source`` names it in errors."""
    if not isinstance(text, str):
        raise DefinitionError(f"{source}: a workflow must be given as text, "
                              f"not {type(text).__name__}.")
    if text.startswith("\ufeff"):  # tomllib would say only "Invalid statement" at 1:1
        raise DefinitionError(f"{source}: the text starts with a byte order mark (U+FEFF, "
                              f"bytes EF BB BF), which TOML does not allow: save the file as "
                              f"UTF-8 without a BOM.")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DefinitionError(f"{source}: not valid TOML: {e}.", ) from e
    except (RecursionError, ValueError) as e:
        raise DefinitionError(f"{source}: not valid TOML: {e}.") from e
    builder = Builder(doc, source, strict_guards)
    try:
        wf = builder.build(text)
    except RecursionError as e:  # absurdly deep nesting of states
        raise DefinitionError(f"{source}: states are nested too deeply.") from e
    return wf
