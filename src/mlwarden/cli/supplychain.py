"""``mlwarden keygen | sign | verify | scan | check-deps``: supply-chain controls for models."""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from mlwarden.cli._console import console
from mlwarden.cli.app import _STYLE, _emit, _output_format, _run_scan, _severity
from mlwarden.errors import ConfigError

__all__ = ["check_deps", "keygen", "scan", "sign", "verify"]


def _password(env_var: str | None) -> str | None:
    if env_var is None:
        return None
    value = os.environ.get(env_var)
    if not value:
        raise ConfigError(f"--password-env {env_var}: the environment variable is not set")
    return value


def keygen(
    out: Path = typer.Option(..., "--out", "-o", help="Folder for private.pem and public.pem."),
    password_env: str | None = typer.Option(
        None, "--password-env", help="Encrypt the private key with the password in this variable."
    ),
    force: bool = typer.Option(False, "--force", help="Replace keys already in --out."),
) -> None:
    """Generate an EC P-256 key pair for signing models."""
    from mlwarden.supplychain.signing import generate_keypair

    pair = generate_keypair(out, password=_password(password_env), overwrite=force)
    console.print(f"private key: [bold]{escape(str(pair.private_key))}[/] (keep it secret)")
    console.print(f"public key:  [bold]{escape(str(pair.public_key))}[/]")


def sign(
    model: Path = typer.Argument(..., help="Model file or folder to sign."),
    key: Path = typer.Option(..., "--key", "-k", help="PEM private key."),
    sig: Path | None = typer.Option(
        None, "--sig", help="Signature file (default FOLDER/model.sig or FILE.sig)."
    ),
    cert: Path | None = typer.Option(
        None, "--cert", help="Signing certificate for --key (certificate-based signing)."
    ),
    chain: list[Path] = typer.Option(
        [], "--chain", help="Intermediate certificate(s) up to a trusted root (repeatable)."
    ),
    password_env: str | None = typer.Option(
        None, "--password-env", help="Read the private key's password from this variable."
    ),
) -> None:
    """Sign a model with OpenSSF model-signing (verifiable with `model_signing verify`)."""
    from mlwarden.supplychain.signing import sign_model

    path = sign_model(
        model,
        private_key=key,
        signature=sig,
        password=_password(password_env),
        signing_certificate=cert,
        certificate_chain=chain,
    )
    console.print(f"signed [bold]{escape(str(model))}[/] -> {escape(str(path))}")


def verify(
    model: Path = typer.Argument(..., help="Model file or folder to verify."),
    pub: Path | None = typer.Option(None, "--pub", "-p", help="PEM public key of the signer."),
    cert_chain: list[Path] = typer.Option(
        [], "--cert-chain", help="Trusted root/intermediate certificates (certificate signatures)."
    ),
    sig: Path | None = typer.Option(
        None, "--sig", help="Signature file (default FOLDER/model.sig or FILE.sig)."
    ),
) -> None:
    """Verify a model's signature; exit 2 naming every changed, added, removed or renamed file."""
    from mlwarden.supplychain.signing import verify_model

    result = verify_model(model, public_key=pub, certificate_chain=cert_chain, signature=sig)
    console.print(
        f"[green]verified[/] {escape(str(model))}: {len(result.files)} file(s) signed by "
        f"{escape(result.signer)}"
    )


def scan(
    paths: list[Path] = typer.Argument(..., help="Files and folders to scan."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or sarif."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the JSON/SARIF here."),
    fail_on: str = typer.Option(
        "high", "--fail-on", help="Exit 1 when an issue is at least this severe."
    ),
) -> None:
    """Scan model artifacts for code that would run when they are loaded (never loads them)."""
    # the same run as the fast path in cli/app.py, which takes plain scan command lines itself
    code = _run_scan(paths, fmt=fmt, out=out, fail_on=fail_on)
    if code:
        raise typer.Exit(code=code)


def check_deps(
    requirements: Path | None = typer.Option(
        None, "--requirements", "-r", help="Pinned requirements file (name==version)."
    ),
    environment: bool = typer.Option(
        False, "--environment", help="Audit the packages installed in this environment."
    ),
    db: Path | None = typer.Option(
        None, "--db", help="Local OSV advisories: a folder of .json files or osv.dev's all.zip."
    ),
    online: bool = typer.Option(
        False, "--online", help="Query the OSV API (https://api.osv.dev) instead of --db."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, json or sarif."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the JSON/SARIF here."),
    fail_on: str = typer.Option(
        "low", "--fail-on", help="Exit 1 when a vulnerability is at least this severe."
    ),
) -> None:
    """Match dependencies against OSV advisories; exit 1 when one is vulnerable."""
    from mlwarden.supplychain.deps import (
        AdvisorySource,
        LocalOsvDatabase,
        OsvApi,
        audit,
        installed_packages,
        read_requirements,
    )
    from mlwarden.supplychain.sarif import audit_to_sarif

    if (requirements is None) == (not environment):
        raise ConfigError("give exactly one of --requirements FILE or --environment")
    if (db is None) == (not online):
        raise ConfigError("give exactly one of --db DIR (offline advisories) or --online")
    threshold = _severity(fail_on, "--fail-on")
    fmt = _output_format(fmt, out)
    if requirements is not None:
        packages, unpinned = read_requirements(requirements)
    else:
        packages, unpinned = installed_packages(), []
    source: AdvisorySource = LocalOsvDatabase(db) if db is not None else OsvApi()
    report = audit(packages, source, unpinned=unpinned)
    if fmt == "table":
        table = Table(title=f"Dependency audit ({escape(report.database)})")
        for column in ("package", "version", "advisory", "severity", "fixed in", "summary"):
            table.add_column(column, overflow="fold")
        for vuln in report.vulnerabilities:
            table.add_row(
                escape(vuln.package.name),
                escape(vuln.package.version),
                escape(vuln.id),
                f"[{_STYLE[vuln.severity]}]{vuln.severity.value}[/]",
                escape(vuln.fix),
                escape(vuln.summary),
            )
        console.print(table)
        for line in report.unpinned:
            console.print(f"[yellow]not audited (not pinned):[/] {escape(line)}")
        for problem in report.problems:
            console.print(f"[yellow]warning:[/] {escape(problem)}")
    else:
        _emit(report.to_dict() if fmt == "json" else audit_to_sarif(report), out)
    failing = report.at_or_above(threshold)
    if fmt == "table" or out is not None:
        console.print(
            f"{len(report.packages)} package(s), {len(report.vulnerabilities)} vulnerability(ies)"
            f" ({report.withdrawn} withdrawn advisory(ies) ignored)"
        )
    if failing:
        raise typer.Exit(code=1)
