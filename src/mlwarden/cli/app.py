"""The ``mlwarden`` command line: one typer app, one module per command group.

Command modules are imported only when their command runs (:class:`_LazyGroup`): ``mlwarden
scan`` must not pay for torch, and ``mlwarden --help`` lists every command from the table below
without importing any of them.

``mlwarden scan`` is the command people put in front of every model they download, so it has a
fast path (issue 14): when the arguments are plainly well formed (:func:`_scan_options`), the
scan runs without importing typer, click or pydantic (about 0.1 s of start-up), and rich is
imported only to print a table or a status line. Anything else (``--help``, a global option, an
unknown or malformed option, no path) goes through typer, which parses it and words the error;
both paths run :func:`_run_scan`, so output and exit codes are the same.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlwarden import __version__
from mlwarden.errors import ConfigError, MlwardenError
from mlwarden.report.findings import Severity

if TYPE_CHECKING:
    from rich.console import Console

    from mlwarden.supplychain.scan import ScanReport

__all__ = ["EXIT_GATE_FAILED", "EXIT_USAGE", "app", "main"]

EXIT_USAGE = 2
EXIT_GATE_FAILED = 3
_EXIT_FOUND = 1
_EXIT_ABORTED = 130
_LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"

# name -> (module, attribute, "command" for a function, "hidden" for a hidden alias of one, or
# "group" for a typer app; short help)
_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "assess": (
        "mlwarden.cli.assess",
        "assess",
        "command",
        "Assess a model's robustness and write a report; exit 3 when a policy gate fails.",
    ),
    "keygen": (
        "mlwarden.cli.supplychain",
        "keygen",
        "command",
        "Generate an EC P-256 key pair for signing models.",
    ),
    "sign": (
        "mlwarden.cli.supplychain",
        "sign",
        "command",
        "Sign a model with OpenSSF model-signing (verifiable with `model_signing verify`).",
    ),
    "verify": (
        "mlwarden.cli.supplychain",
        "verify",
        "command",
        "Verify a model's signature; exit 2 naming every changed, added, removed or renamed file.",
    ),
    "scan": (
        "mlwarden.cli.supplychain",
        "scan",
        "command",
        "Scan model artifacts for code that would run when they are loaded (never loads them).",
    ),
    "check-deps": (
        "mlwarden.cli.supplychain",
        "check_deps",
        "command",
        "Match dependencies against OSV advisories; exit 1 when one is vulnerable.",
    ),
    # the old name, kept hidden for one release (0.2); remove it in 0.3
    "audit-deps": (
        "mlwarden.cli.supplychain",
        "check_deps",
        "hidden",
        "Old name of check-deps.",
    ),
    "serve": (
        "mlwarden.cli.serve",
        "serve",
        "command",
        "Serve the configured models behind the defended gateway (uvicorn).",
    ),
    "zoo": (
        "mlwarden.cli.zoo",
        "app",
        "group",
        "Reference models trained deterministically on built-in data.",
    ),
    "harden": (
        "mlwarden.cli.harden",
        "app",
        "group",
        "Harden a model: adversarial training, Gaussian-noise training for randomized "
        "smoothing, or DP-SGD.",
    ),
    "fl": (
        "mlwarden.cli.fl",
        "app",
        "group",
        "Federated learning on Flower: FedAvg over partitioned data, SecAgg+, differential privacy.",
    ),
    "attack": (
        "mlwarden.cli.attack",
        "app",
        "group",
        "Run one attack and write its result: membership inference, model inversion, DP audit.",
    ),
    "data": (
        "mlwarden.cli.data",
        "app",
        "group",
        "Red-team training data: plant backdoors or label flips in a copy, or inspect data for "
        "poison.",
    ),
    "keys": (
        "mlwarden.cli.serve",
        "keys_app",
        "group",
        "Create, list and revoke gateway API keys.",
    ),
    "audit": (
        "mlwarden.cli.serve",
        "audit_app",
        "group",
        "Verify and read the gateway's hash-chained audit log.",
    ),
    "threat-model": (
        "mlwarden.cli.program",
        "threat_model_app",
        "group",
        "Write a system's threat model; derive ATLAS threats, risk scores and a control plan.",
    ),
    "program": (
        "mlwarden.cli.program",
        "app",
        "group",
        "The security programme: systems, assessment history, status, NIST AI RMF reports.",
    ),
    "governance": (
        "mlwarden.cli.governance",
        "app",
        "group",
        "Data governance: register datasets and models, lineage, audited access, retention.",
    ),
}


# -- shared option checks and output (typer-free: the scan fast path uses them) ----------------

_FORMATS = ("table", "json", "sarif")
_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.HIGH: "red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def _severity(value: str, option: str) -> Severity:
    try:
        return Severity(value.lower())
    except ValueError:
        raise ConfigError(
            f"{option} {value!r} is not a severity; choose one of "
            f"{', '.join(s.value for s in Severity)}"
        ) from None


def _output_format(fmt: str, out: Path | None) -> str:
    fmt = fmt.lower()
    if fmt not in _FORMATS:
        raise ConfigError(f"--format {fmt!r} is not one of {', '.join(_FORMATS)}")
    if out is not None and fmt == "table":
        raise ConfigError("--out writes a document; combine it with --format json or sarif")
    return fmt


def _stdout() -> Console:
    """A rich console on stdout, made when something is printed (rich costs ~30 ms to import)."""
    from rich.console import Console

    return Console()


def _emit(document: dict, out: Path | None) -> None:
    """Print ``document`` as JSON on stdout, or write it atomically to ``out``."""
    text = json.dumps(document, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        from rich.markup import escape

        from mlwarden._io import atomic_write_text

        atomic_write_text(out, text)
        _stdout().print(f"wrote [bold]{escape(str(out))}[/]")


# -- scan ---------------------------------------------------------------------------------------


def _run_scan(paths: Sequence[Path], *, fmt: str, out: Path | None, fail_on: str) -> int:
    """``mlwarden scan`` once its options are parsed; 1 when an issue reaches ``fail_on``."""
    from mlwarden.supplychain.scan import scan_paths

    threshold = _severity(fail_on, "--fail-on")
    fmt = _output_format(fmt, out)
    report = scan_paths(paths)
    if fmt == "table":
        _print_scan(report)
    elif fmt == "json":
        _emit(report.to_dict(), out)
    else:
        from mlwarden.supplychain.sarif import scan_to_sarif

        _emit(scan_to_sarif(report), out)
    failing = report.at_or_above(threshold)
    if fmt == "table" or out is not None:
        verdict = (
            f"[bold red]FAIL[/]: {len(failing)} issue(s) at or above {threshold.value}"
            if failing
            else f"[green]pass[/]: nothing at or above {threshold.value}"
        )
        _stdout().print(
            f"{len(report.files)} file(s), {report.bytes_scanned / 1e6:.1f} MB in "
            f"{report.duration_s:.2f} s; {verdict}"
        )
    return _EXIT_FOUND if failing else 0


def _print_scan(report: ScanReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="Artifact scan", show_lines=False)
    for column in ("file", "format", "verdict", "issues"):
        table.add_column(column, overflow="fold")
    for record in report.files:
        worst = record.max_severity
        if worst is not None:
            verdict = f"[{_STYLE[worst]}]{worst.value}[/]"
        elif not record.scanned:
            verdict = "[yellow]unscanned[/]"
        elif record.safe_by_construction:
            verdict = "[green]safe by construction[/]"
        else:
            verdict = "[green]clean[/]"
        issues = "\n".join(
            f"[{_STYLE[i.severity]}]{i.severity.value}[/] {escape(i.message)}"
            + (f" ({escape(i.path)})" if i.path != record.path else "")
            for i in sorted(record.issues, key=lambda i: -i.severity.rank)
        )
        notes = "\n".join(f"[dim]{escape(n)}[/]" for n in record.notes if "unscanned" in n)
        table.add_row(
            escape(record.path), record.format, verdict, "\n".join(x for x in (issues, notes) if x)
        )
    console = _stdout()
    console.print(table)
    if report.skipped:
        console.print(f"[dim]{len(report.skipped)} other file(s) are not model artifacts[/]")


# option -> keyword of _run_scan; the same names as the typer command in cli/supplychain.py
_SCAN_OPTIONS = {
    "--format": "fmt",
    "-f": "fmt",
    "--out": "out",
    "-o": "out",
    "--fail-on": "fail_on",
}


def _scan_options(args: Sequence[str]) -> dict[str, Any] | None:
    """The keywords of :func:`_run_scan` for ``scan ARGS...``, or None to let typer parse them.

    Only a plain command line is taken: paths that do not start with ``-`` and the scan options
    as ``--opt VALUE``, ``--opt=VALUE`` or ``-f VALUE``, each value not starting with ``-``.
    Anything else (``--help``, ``--``, ``-fjson``, an unknown option, a missing value, no path)
    returns None, so that typer answers it exactly as it always has. argparse is not used: its
    grammar (abbreviated options, its own error messages) differs from click's.
    """
    if not args or args[0] != "scan":
        return None
    options: dict[str, Any] = {"fmt": "table", "out": None, "fail_on": "high"}
    paths: list[Path] = []
    rest = list(args[1:])
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            if not token:
                return None
            paths.append(Path(token))
            continue
        name, equals, value = token.partition("=")
        if name not in _SCAN_OPTIONS or (equals and not name.startswith("--")):
            return None
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        options[_SCAN_OPTIONS[name]] = Path(value) if name in ("--out", "-o") else value
    if not paths:
        return None
    return {"paths": paths, **options}


# -- the typer app (imported only when a command other than a plain scan runs) -----------------


def _load_command(name: str) -> Any:
    """Import the module of one command and build its click command."""
    import typer

    module_name, attribute, kind, _ = _COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    command: Any
    if kind == "group":
        command = typer.main.get_group(target)
    else:
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(name, hidden=kind == "hidden")(target)
        command = typer.main.get_command(single)
    command.name = name
    return command


def _build_app() -> Any:
    """The typer app: a :class:`_LazyGroup` over :data:`_COMMANDS` plus the global options."""
    import typer
    from typer.core import TyperCommand, TyperGroup

    class _LazyGroup(TyperGroup):
        """A typer group whose commands are imported when they run, not when the CLI starts."""

        _listing = False

        def list_commands(self, ctx: Any) -> list[str]:
            shown = [name for name, spec in _COMMANDS.items() if spec[2] != "hidden"]
            return [*super().list_commands(ctx), *shown]

        def get_command(self, ctx: Any, cmd_name: str) -> Any:
            command = super().get_command(ctx, cmd_name)
            if command is not None or cmd_name not in _COMMANDS:
                return command
            if self._listing:  # the help page needs only the one-line help
                return TyperCommand(name=cmd_name, help=_COMMANDS[cmd_name][3])
            command = _load_command(cmd_name)
            self.add_command(command, cmd_name)
            return command

        def format_help(self, ctx: Any, formatter: Any) -> None:
            self._listing = True
            try:
                super().format_help(ctx, formatter)
            finally:
                self._listing = False

    built = typer.Typer(
        name="mlwarden",
        cls=_LazyGroup,
        help="Secure a model across its life: attack it, harden it, sign and scan it, serve it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    def _version(value: bool) -> None:
        if value:
            typer.echo(f"mlwarden {__version__}")
            raise typer.Exit()

    @built.callback()
    def _root(
        version: bool = typer.Option(
            False, "--version", callback=_version, is_eager=True, help="Print the version."
        ),
        verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
    ) -> None:
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format=_LOG_FORMAT)

    return built


_APP: Any = None
app: Any  # the typer app; only declared here, :func:`__getattr__` builds it on first use


def __getattr__(name: str) -> Any:
    """``app``, the typer app, built on first use (PEP 562) so that importing this is cheap."""
    global _APP
    if name == "app":
        if _APP is None:
            _APP = _build_app()
        return _APP
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_typer(argv: list[str] | None) -> int:
    import typer

    # Recent typer releases bundle their own copy of click, whose exceptions are not click's:
    # take the ClickException that typer.BadParameter derives from, whichever click typer runs on.
    click_exception: Any = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
    )
    try:
        code = __getattr__("app")(args=argv, prog_name="mlwarden", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        _aborted()
        return _EXIT_ABORTED
    except click_exception as exc:  # usage errors: missing or malformed options
        exc.show()
        return EXIT_USAGE
    return int(code or 0)


def _aborted() -> None:
    from rich.console import Console

    Console(stderr=True).print("[red]aborted[/]")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one red line and exit code 2."""
    try:
        options = _scan_options(sys.argv[1:] if argv is None else argv)
        if options is None:
            return _run_typer(argv)
        logging.basicConfig(level=logging.WARNING, format=_LOG_FORMAT)  # as typer's _root does
        try:
            return _run_scan(**options)
        except (EOFError, KeyboardInterrupt):  # what click does with them
            sys.stderr.write("\n")
            _aborted()
            return _EXIT_ABORTED
    except MlwardenError as exc:
        from rich.console import Console
        from rich.markup import escape

        # one line, printed literally: messages quote values such as robust_accuracy[pgd]@0.1
        # that rich would otherwise take for markup tags
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        err = Console(stderr=True)
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
