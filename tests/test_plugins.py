"""Your own guards from the shell: ``--guards`` (a module name or a .py file),
``$APPROVALFLOW_GUARDS``, and the ``approvalflow.guards`` entry point of an installed package.

Every command runs as a real process of the installed console script, so each starts
with an empty guard registry, as a user's shell does.
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

import approvalflow as af
from approvalflow import guards

ROOT = Path(__file__).resolve().parents[1]
GRANT = ROOT / "tests" / "fixtures" / "research-grant.toml"
CONSOLE = Path(sys.executable).with_name("approvalflow")


def run(*args: str, env: dict[str, str] | None = None, python: Path | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``approvalflow ARGS`` as a process (``python -m approvalflow`` for another venv)."""
    full = dict(os.environ)
    full.pop("APPROVALFLOW_GUARDS", None)
    full.update(env or {})
    argv = [str(python), "-m", "approvalflow", *args] if python else [str(CONSOLE), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=full, timeout=120,
                          cwd=cwd or ROOT)


def _drive(db: Path, *, env: dict[str, str] | None = None, guards: tuple[str, ...] = (),
           python: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Create a grant case and take the guarded finance step; return the finance step."""
    opts = [x for g in guards for x in ("--guards", g)]
    new = run(*opts, "--db", str(db), "new", str(GRANT), "g-1", "--actor", "applicant",
              "--on", "2024-01-02", "--data", '{"budget": 5000}', "--by", "ann",
              env=env, python=python)
    assert new.returncode == 0, new.stderr
    submit = run(*opts, "--db", str(db), "fire", "g-1", "submit", "--actor", "applicant",
                 "--on", "2024-01-03", "--by", "ann", env=env, python=python)
    assert submit.returncode == 0, submit.stderr
    return run(*opts, "--db", str(db), "fire", "g-1", "finance.ok", "--actor", "finance",
               "--on", "2024-01-04", "--by", "kim", env=env, python=python)


def test_without_the_guard_module_the_cli_says_how_to_give_it(tmp_path: Path) -> None:
    """check on a file whose guard is not registered fails with CLI advice (--guards), no
    Python advice."""
    done = run("check", str(GRANT))
    assert done.returncode == 1
    assert "guard 'grant_budget_ok' is not registered" in done.stderr
    assert "--guards MODULE" in done.stderr and "$APPROVALFLOW_GUARDS" in done.stderr
    assert "@approvalflow" not in done.stderr


def test_guards_option_with_a_module_name(tmp_path: Path) -> None:
    """--guards tests.grant_guards (a module name) lets check, new and a guarded fire run."""
    check = run("--guards", "tests.grant_guards", "check", str(GRANT))
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"ok: {GRANT}: research-grant v1")
    fired = _drive(tmp_path / "g.db", guards=("tests.grant_guards",))
    assert fired.returncode == 0, fired.stderr
    assert "finance.ok by finance (kim)" in fired.stdout


def test_guards_option_with_a_path_refuses_by_the_guard(tmp_path: Path) -> None:
    """--guards path/to/file.py imports that file; its guard decides (here: refuses)."""
    module = tmp_path / "strict_guards.py"
    module.write_text(textwrap.dedent('''
        import approvalflow as af

        @af.guard("grant_budget_ok")
        def over(ctx):
            return "the finance office approves nothing this year"
    '''), encoding="utf-8")
    fired = _drive(tmp_path / "g.db", guards=(str(module),))
    assert fired.returncode == 1
    assert "the finance office approves nothing this year" in fired.stderr


@pytest.mark.parametrize("body", ['return "over budget\\nsee the\\x85 minutes\\u2028too"',
                                  'raise ValueError("line one\\nline two")'])
def test_a_refusal_whose_reason_spans_lines_is_one_error_line(tmp_path: Path,
                                                              body: str) -> None:
    """A guard's reason (or its exception's message) with a line break, NEL or U+2028:
    fire exits 1 with one Error line, NEL shown as its escape (it was two Error lines, the
    NEL and U+2028 breaking the line and dropped)."""
    module = tmp_path / "multiline_guards.py"
    module.write_text(textwrap.dedent(f'''
        import approvalflow as af

        @af.guard("grant_budget_ok")
        def over(ctx):
            {body}
    '''), encoding="utf-8")
    fired = _drive(tmp_path / "g.db", guards=(str(module),))
    assert fired.returncode == 1, fired.stderr
    lines = fired.stderr.rstrip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("Error: "), fired.stderr
    assert "line one line two" in lines[0] or "over budget see the\\x85 minutes" in lines[0]


def test_guards_from_the_environment_variable(tmp_path: Path) -> None:
    """$APPROVALFLOW_GUARDS (comma-separated) is read before the command, like --guards."""
    env = {"APPROVALFLOW_GUARDS": " tests.grant_guards , "}
    fired = _drive(tmp_path / "g.db", env=env)
    assert fired.returncode == 0, fired.stderr
    verify = run("--db", str(tmp_path / "g.db"), "verify", "--strict", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_a_guard_module_that_does_not_import_is_one_error_line(tmp_path: Path) -> None:
    """A missing module, a missing file and a module that raises: one Error line each,
    naming it, exit 1, no traceback."""
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('half-written')\n", encoding="utf-8")
    for spec, expected in (("no_such_guards_mod", "there is no module 'no_such_guards_mod'"),
                           (str(tmp_path / "gone.py"), "is not a file"),
                           (str(broken), "RuntimeError: half-written")):
        done = run("--guards", spec, "workflows")
        assert done.returncode == 1, spec
        assert done.stderr.startswith("Error: ") and expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_load_guard_module_in_python(tmp_path: Path) -> None:
    """approvalflow.load_guard_module registers a file's guards in this process."""
    module = tmp_path / "py_guards.py"
    module.write_text("import approvalflow as af\n\n"
                      "@af.guard('py_loaded_guard')\n"
                      "def g(ctx):\n    return True\n", encoding="utf-8")
    try:
        loaded = af.load_guard_module(str(module))
        assert "py_loaded_guard" in guards.registered_guards()
        assert af.load_guard_module(str(module)) is loaded  # once per file
    finally:
        guards.unregister_guard("py_loaded_guard")


# -- an installed package that declares its guards ---------------------------------------

PLUGIN = "afgrant_plugin"
PLUGIN_GUARDS = '''
import approvalflow as af

@af.guard("grant_budget_ok")
def budget(ctx):
    return ctx.data.get("budget", 0) <= 10_000 or "over the plugin's limit of 10000"
'''


def _wheel(folder: Path) -> Path:
    """A wheel of a small package whose guards module is declared under the entry-point
    group ``approvalflow.guards``: written file by file, so building it needs nothing
    that is not installed (no build backend, no network)."""
    dist = f"{PLUGIN}-1.0.dist-info"
    files = {
        f"{PLUGIN}/__init__.py": "",
        f"{PLUGIN}/guards.py": PLUGIN_GUARDS,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {PLUGIN}\nVersion: 1.0\n",
        f"{dist}/WHEEL": ("Wheel-Version: 1.0\nGenerator: approvalflow-tests\n"
                          "Root-Is-Purelib: true\nTag: py3-none-any\n"),
        f"{dist}/entry_points.txt": f"[approvalflow.guards]\ngrant = {PLUGIN}.guards\n",
    }
    record = []
    for name, text in files.items():
        data = text.encode()
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    path = folder / f"{PLUGIN}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, text in files.items():
            whl.writestr(name, text)
    return path


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv that sees this environment's packages (approvalflow among them) and
    has the plugin package pip-installed; returns its python."""
    folder = tmp_path_factory.mktemp("plugin")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                              "print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    # this environment's site-packages, with its .pth files (the editable approvalflow)
    here = sysconfig.get_paths()["purelib"]
    Path(purelib, "outer_env.pth").write_text(f"import site; site.addsitedir({here!r})\n",
                                              encoding="utf-8")
    subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--no-deps", "-q",
                    str(_wheel(folder))], check=True, timeout=300)
    return python


def test_installed_package_guards_are_found_by_the_cli(plugin_venv: Path, tmp_path: Path) -> None:
    """With the plugin installed, check and a guarded fire work with no --guards at all,
    and the plugin's guard decides."""
    check = run("check", str(GRANT), python=plugin_venv)
    assert check.returncode == 0, check.stderr
    fired = _drive(tmp_path / "g.db", python=plugin_venv)
    assert fired.returncode == 0, fired.stderr
    db = str(tmp_path / "g.db")
    new = run("--db", db, "new", str(GRANT), "g-2", "--actor", "applicant", "--on",
              "2024-01-02", "--data", '{"budget": 20000}', python=plugin_venv)
    assert new.returncode == 0, new.stderr
    run("--db", db, "fire", "g-2", "submit", "--actor", "applicant", "--on", "2024-01-03",
        "--by", "ann", python=plugin_venv)
    refused = run("--db", db, "fire", "g-2", "finance.ok", "--actor", "finance", "--on",
                  "2024-01-04", "--by", "kim", python=plugin_venv)
    assert refused.returncode == 1
    assert "over the plugin's limit of 10000" in refused.stderr


def test_installed_package_guards_in_python_with_one_call(plugin_venv: Path) -> None:
    """approvalflow.load_guard_plugins() imports the declared modules and names them."""
    code = ("import approvalflow as af\n"
            "from approvalflow.guards import registered_guards\n"
            "assert 'grant_budget_ok' not in registered_guards()\n"
            "print(af.load_guard_plugins())\n"
            "assert 'grant_budget_ok' in registered_guards()\n")
    done = subprocess.run([str(plugin_venv), "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{{'grant': '{PLUGIN}.guards'}}"
