"""The ``mlwarden`` command line: one typer app, one module per command group."""

from __future__ import annotations

import logging
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from mlwarden import __version__
from mlwarden.cli import assess as assess_cmd
from mlwarden.cli import attack as attack_cmd
from mlwarden.cli import data as data_cmd
from mlwarden.cli import harden as harden_cmd
from mlwarden.cli import serve as serve_cmd
from mlwarden.cli import supplychain as supplychain_cmd
from mlwarden.cli import zoo as zoo_cmd
from mlwarden.errors import MlwardenError

__all__ = ["EXIT_GATE_FAILED", "EXIT_USAGE", "app", "main"]

EXIT_USAGE = 2
EXIT_GATE_FAILED = 3

app = typer.Typer(
    name="mlwarden",
    help="Secure a model across its life: attack it, harden it, sign and scan it, serve it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("assess")(assess_cmd.assess)
app.command("keygen")(supplychain_cmd.keygen)
app.command("sign")(supplychain_cmd.sign)
app.command("verify")(supplychain_cmd.verify)
app.command("scan")(supplychain_cmd.scan)
app.command("check-deps")(supplychain_cmd.check_deps)
# The old name, kept hidden for one release (0.2); remove it in 0.3.
app.command("audit-deps", hidden=True)(supplychain_cmd.check_deps)
app.add_typer(zoo_cmd.app, name="zoo")
app.add_typer(harden_cmd.app, name="harden")
app.add_typer(attack_cmd.app, name="attack")
app.add_typer(data_cmd.app, name="data")
app.command("serve")(serve_cmd.serve)
app.add_typer(serve_cmd.keys_app, name="keys")
app.add_typer(serve_cmd.audit_app, name="audit")


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
