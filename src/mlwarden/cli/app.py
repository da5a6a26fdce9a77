"""The ``mlwarden`` command line: one typer app, one module per command group.

Command modules are imported only when their command runs (:class:`_LazyGroup`): ``mlwarden
scan`` must not pay for torch, and ``mlwarden --help`` lists every command from the table below
without importing any of them.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from mlwarden import __version__
from mlwarden.errors import MlwardenError

__all__ = ["EXIT_GATE_FAILED", "EXIT_USAGE", "app", "main"]

EXIT_USAGE = 2
EXIT_GATE_FAILED = 3

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
}


def _load_command(name: str) -> Any:
    """Import the module of one command and build its click command."""
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


app = typer.Typer(
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


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details."),
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


# Recent typer releases bundle their own copy of click, whose exceptions are not click's: take
# the ClickException that typer.BadParameter derives from, whichever click typer runs on.
_CLICK_EXCEPTION: Any = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one red line and exit code 2."""
    from rich.console import Console
    from rich.markup import escape

    err = Console(stderr=True)
    try:
        code = app(args=argv, prog_name="mlwarden", standalone_mode=False)
    except MlwardenError as exc:
        # one line, printed literally: messages quote values such as robust_accuracy[pgd]@0.1
        # that rich would otherwise take for markup tags
        message = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("[red]aborted[/]")
        return 130
    except _CLICK_EXCEPTION as exc:  # usage errors: missing or malformed options
        exc.show()
        return EXIT_USAGE
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
