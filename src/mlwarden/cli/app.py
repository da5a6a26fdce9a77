"""The ``mlwarden`` command line: one typer app, one module per command group."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from mlwarden import __version__
from mlwarden.cli import assess as assess_cmd
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
app.add_typer(zoo_cmd.app, name="zoo")


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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one red line and exit code 2."""
    err = Console(stderr=True)
    try:
        code = app(args=argv, prog_name="mlwarden", standalone_mode=False)
    except MlwardenError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        return EXIT_USAGE
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("[red]aborted[/]")
        return 130
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            return EXIT_USAGE
        raise
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
