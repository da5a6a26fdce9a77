"""Sign and verify model files and folders with OpenSSF ``model-signing``.

Signatures are Sigstore bundles over an in-toto statement that lists the SHA-256 digest of every
file of the model, written by the ``model-signing`` library (``pip install 'mlwarden[sign]'``).
They are made with exactly the settings of its command line (``model_signing sign key`` /
``model_signing sign certificate``), so a signature made here verifies with
``model_signing verify key`` and the other way round.

* :func:`generate_keypair` writes an EC P-256 key pair (PEM);
* :func:`sign_model` signs a file or a folder with a private key, optionally with a signing
  certificate and its chain;
* :func:`verify_model` checks a signature with a public key or a certificate chain and raises
  :class:`~mlwarden.errors.SignatureError` naming every changed, added, removed or renamed file.

One rule is stricter than ``model_signing``: a single signed *file* must keep the name it was
signed under (the library treats the name as informative only), so a renamed file is refused too.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlwarden._io import atomic_write_bytes, atomic_write_with
from mlwarden.errors import ConfigError, SignatureError

__all__ = [
    "DIRECTORY_SIGNATURE_NAME",
    "KeyPair",
    "Verification",
    "default_signature_path",
    "generate_keypair",
    "sign_model",
    "signature_verifier",
    "verify_before_load",
    "verify_model",
]

logger = logging.getLogger(__name__)

DIRECTORY_SIGNATURE_NAME = "model.sig"
"""Name of a folder's signature, stored inside the folder (and left out of what is signed)."""

_PRIVATE_NAME = "private.pem"
_PUBLIC_NAME = "public.pem"


@dataclass(frozen=True)
class KeyPair:
    """Where :func:`generate_keypair` wrote the private and the public key."""

    private_key: Path
    public_key: Path


@dataclass(frozen=True)
class Verification:
    """A signature that verified.

    Attributes
    ----------
    model, signature
        What was verified, and with which signature file.
    files
        The signed files (paths relative to a folder model; ``"."`` for a single file).
    signer
        Who signed: ``"key sha256:<fingerprint>"`` or the signing certificate's subject.
    """

    model: Path
    signature: Path
    files: tuple[str, ...]
    signer: str


def _model_signing() -> Any:
    try:
        import model_signing
        import model_signing.hashing
        import model_signing.signing
        import model_signing.verifying
    except ImportError as exc:
        raise ConfigError(
            "signing needs the OpenSSF model-signing library; install it with "
            "pip install 'mlwarden[sign]'"
        ) from exc
    return model_signing


def default_signature_path(model: str | os.PathLike[str]) -> Path:
    """Where a model's signature lives unless told otherwise.

    ``FOLDER/model.sig`` for a folder (the file ``model_signing`` names by default), and
    ``FILE.sig`` beside a single file.
    """
    path = Path(model)
    if path.is_dir():
        return path / DIRECTORY_SIGNATURE_NAME
    return path.with_name(path.name + ".sig")


def generate_keypair(
    out_dir: str | os.PathLike[str], *, password: str | None = None, overwrite: bool = False
) -> KeyPair:
    """Write a new EC P-256 key pair as ``private.pem`` (mode 0600) and ``public.pem``.

    Parameters
    ----------
    out_dir
        Folder to write into (created if needed).
    password
        Encrypt the private key with this password (PKCS#8, best available encryption).
    overwrite
        Replace keys already there; by default existing keys are never overwritten.

    Raises
    ------
    ConfigError
        A key already exists in ``out_dir`` and ``overwrite`` is false.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    out = Path(out_dir)
    private_path, public_path = out / _PRIVATE_NAME, out / _PUBLIC_NAME
    existing = [p for p in (private_path, public_path) if p.exists()]
    if existing and not overwrite:
        raise ConfigError(
            f"{existing[0]} already exists; choose another --out folder or pass --force to "
            "replace the keys"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode("utf-8"))
        if password
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def write_private(tmp: Path) -> None:
        os.chmod(tmp, 0o600)
        tmp.write_bytes(private_pem)

    atomic_write_with(private_path, write_private)
    atomic_write_bytes(public_path, public_pem)
    logger.info("wrote EC P-256 key pair to %s", out)
    return KeyPair(private_key=private_path, public_key=public_path)


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    result = Path(path)
    if not result.exists():
        raise ConfigError(f"{what} {str(result)!r} does not exist")
    return result


def _ignored_paths(model: Path, signature: Path) -> list[Path]:
    """The signature's path relative to a folder model, as ``model_signing``'s CLI ignores it."""
    try:
        return [signature.resolve().relative_to(model.resolve())]
    except ValueError:
        return []


def _hashing_config(ms: Any, model: Path, signature: Path) -> Any:
    return (
        ms.hashing.Config()
        .set_ignored_paths(paths=_ignored_paths(model, signature), ignore_git_paths=True)
        .set_allow_symlinks(False)
    )


def sign_model(
    model: str | os.PathLike[str],
    *,
    private_key: str | os.PathLike[str],
    signature: str | os.PathLike[str] | None = None,
    password: str | None = None,
    signing_certificate: str | os.PathLike[str] | None = None,
    certificate_chain: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Sign a model file or folder and write the signature atomically.

    Parameters
    ----------
    model
        The model file, or a folder whose every file (except git metadata and the signature
        itself) is signed.
    private_key
        PEM private key (EC P-256, P-384 or P-521).
    signature
        Where to write the signature; default :func:`default_signature_path`.
    password
        Password of an encrypted private key.
    signing_certificate, certificate_chain
        Sign with a certificate for ``private_key`` and the intermediate certificates that lead
        to a root the verifier trusts (``model_signing sign certificate``).

    Returns
    -------
    Path
        The signature file.

    Raises
    ------
    ConfigError
        A path does not exist, or the key or certificate cannot be used.
    """
    ms = _model_signing()
    model_path = _existing(model, "model")
    key_path = _existing(private_key, "private key")
    sig_path = Path(signature) if signature is not None else default_signature_path(model_path)
    if certificate_chain and signing_certificate is None:
        raise ConfigError("a certificate chain needs --cert, the signing certificate")
    cert_path = (
        _existing(signing_certificate, "signing certificate")
        if signing_certificate is not None
        else None
    )
    chain_paths = [_existing(c, "certificate") for c in certificate_chain]
    try:
        config = ms.signing.Config()
        if cert_path is not None:
            config.use_certificate_signer(
                private_key=key_path, signing_certificate=cert_path, certificate_chain=chain_paths
            )
        else:
            # model-signing 1.1.1 hands the password to cryptography, which wants bytes
            secret = password.encode("utf-8") if password is not None else None
            config.use_elliptic_key_signer(private_key=key_path, password=secret)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot sign with {key_path}: {exc}") from exc
    config.set_hashing_config(_hashing_config(ms, model_path, sig_path))
    # model_signing writes the file in place; sign into a private folder, then move atomically.
    with tempfile.TemporaryDirectory(prefix="mlwarden-sign-") as scratch:
        scratch_sig = Path(scratch) / "model.sig"
        try:
            config.sign(model_path, scratch_sig)
        except (OSError, ValueError) as exc:  # unreadable files, symlinks (refused), ...
            raise ConfigError(f"cannot sign {model_path}: {_explain_file_error(exc)}") from exc
        atomic_write_bytes(sig_path, scratch_sig.read_bytes())
    logger.info("signed %s -> %s", model_path, sig_path)
    return sig_path


def _statement(sig_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundle and the in-toto statement inside it (not verified: read for messages only)."""
    try:
        bundle = json.loads(sig_path.read_text(encoding="utf-8"))
        payload = base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True)
        statement = json.loads(payload)
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise SignatureError(
            f"signature {sig_path} is damaged: it is not a model-signing bundle ({exc})"
        ) from exc
    if not isinstance(statement, dict):
        raise SignatureError(f"signature {sig_path} is damaged: the signed statement is not a map")
    return bundle, statement


def _signer(bundle: dict[str, Any]) -> str:
    material = bundle.get("verificationMaterial", {})
    chain = material.get("x509CertificateChain", {}).get("certificates", [])
    if chain:
        from cryptography import x509

        leaf = x509.load_der_x509_certificate(base64.b64decode(chain[0]["rawBytes"]))
        return f"certificate {leaf.subject.rfc4514_string()}"
    hint = material.get("publicKey", {}).get("hint") or "unknown"
    return f"key sha256:{hint}"


def _describe_mismatch(actual: dict[str, str], expected: dict[str, str], model: Path) -> list[str]:
    added = sorted(set(actual) - set(expected))
    removed = sorted(set(expected) - set(actual))
    problems = []
    for name in sorted(set(actual) & set(expected)):
        if actual[name] != expected[name]:
            problems.append(f"changed: {name}")
    for old in list(removed):
        new = next((n for n in added if actual[n] == expected[old]), None)
        if new is not None:
            problems.append(f"renamed: {old} -> {new}")
            removed.remove(old)
            added.remove(new)
    problems += [f"added: {name}" for name in added]
    problems += [f"removed: {name}" for name in removed]
    return problems or [f"the files of {model} differ from the signed manifest"]


def verify_model(
    model: str | os.PathLike[str],
    *,
    public_key: str | os.PathLike[str] | None = None,
    certificate_chain: Sequence[str | os.PathLike[str]] = (),
    signature: str | os.PathLike[str] | None = None,
) -> Verification:
    """Verify a model file or folder against its signature.

    Give exactly one of ``public_key`` (signatures made with a key) or ``certificate_chain``
    (root and intermediate certificates trusted for certificate signatures).

    Returns
    -------
    Verification
        The signed files and the signer.

    Raises
    ------
    SignatureError
        The signature is missing or damaged, was made with another key or an untrusted
        certificate, or a file was changed, added, removed or renamed (each named).
    ConfigError
        Neither or both of ``public_key`` and ``certificate_chain`` were given, or one of them
        does not exist or cannot be read.
    """
    ms = _model_signing()
    if (public_key is None) == (not certificate_chain):
        raise ConfigError("verify needs exactly one of a public key (--pub) or --cert-chain")
    model_path = Path(model)
    if not model_path.exists():
        raise SignatureError(f"model {str(model_path)!r} does not exist")
    sig_path = Path(signature) if signature is not None else default_signature_path(model_path)
    if not sig_path.is_file():
        raise SignatureError(
            f"{model_path} is not signed: no signature at {sig_path} (sign it with mlwarden sign, "
            "or pass --sig)"
        )
    bundle, statement = _statement(sig_path)
    key_path = _existing(public_key, "public key") if public_key is not None else None
    chain_paths = [_existing(c, "certificate") for c in certificate_chain]
    try:
        config = ms.verifying.Config()
        if key_path is not None:
            config.use_elliptic_key_verifier(public_key=key_path)
        else:
            config.use_certificate_verifier(certificate_chain=chain_paths)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot verify with the given key or certificates: {exc}") from exc
    hashing_config = _hashing_config(ms, model_path, sig_path)
    config.set_hashing_config(hashing_config).set_ignore_unsigned_files(False)
    try:
        config.verify(model_path, sig_path)
    except ValueError as exc:
        text = str(exc)
        if text.startswith("Signature mismatch"):
            expected = _signed_digests(statement)
            actual = {
                rd.identifier: rd.digest.digest_hex
                for rd in hashing_config.hash(model_path).resource_descriptors()
            }
            problems = _describe_mismatch(actual, expected, model_path)
            raise SignatureError(
                f"{model_path} does not match its signature {sig_path}: {'; '.join(problems)}"
            ) from exc
        if "Key mismatch" in text:
            raise SignatureError(
                f"signature {sig_path} of {model_path} was made with another key than {public_key}"
            ) from exc
        if "symlink" in text:
            raise SignatureError(f"cannot verify {model_path}: {_explain_file_error(exc)}") from exc
        raise SignatureError(_damaged(sig_path, model_path, exc)) from exc
    except OSError as exc:
        raise SignatureError(f"cannot read {model_path} to verify it: {exc}") from exc
    except Exception as exc:  # cryptography and OpenSSL raise untyped errors for bad signatures
        raise SignatureError(_damaged(sig_path, model_path, exc)) from exc
    if model_path.is_file():
        signed_names = [s.get("name") for s in statement.get("subject", [])]
        if signed_names and signed_names[0] != model_path.name:
            raise SignatureError(
                f"{model_path} does not match its signature {sig_path}: renamed: "
                f"{signed_names[0]} -> {model_path.name}"
            )
    return Verification(
        model=model_path,
        signature=sig_path,
        files=tuple(sorted(_signed_digests(statement))),
        signer=_signer(bundle),
    )


_SYMLINK = re.compile(r"Cannot use '([^']*)' because it is a symlink")


def _explain_file_error(exc: Exception) -> str:
    """model-signing's file errors in mlwarden's words (it names options mlwarden lacks)."""
    found = _SYMLINK.search(str(exc))
    if found is None:
        return str(exc)
    return (
        f"{found.group(1)} is a symbolic link; mlwarden signs and verifies regular files only, "
        "since a link can be repointed after signing. Replace it with the file it points to "
        "(cp -L) or remove it, then sign again"
    )


def _damaged(sig_path: Path, model_path: Path, exc: Exception) -> str:
    """Say which part of a signature failed, and what to do about it."""
    name = type(exc).__name__
    if name == "InvalidSignature":
        cause = (
            "its signature bytes do not match the signed statement under this key: the "
            "statement (file digests) or the signature was changed after signing, so it is "
            "forged or damaged"
        )
    elif name == "ValidationError" or isinstance(exc, KeyError):
        field = str(exc).splitlines()[1].strip() if "\n" in str(exc) else str(exc)
        cause = f"it is not a well-formed model-signing bundle (bad or missing field {field})"
    elif "certificate" in str(exc).lower() or "x509" in name.lower():
        cause = f"its certificate chain is not trusted ({exc})"
    else:
        cause = f"it cannot be checked ({name}: {exc})"
    return (
        f"signature {sig_path} of {model_path} does not verify: {cause}. Do not load the model; "
        "get the original model.sig from the publisher, or sign the model again with "
        "mlwarden sign if you are its signer"
    )


def _signed_digests(statement: dict[str, Any]) -> dict[str, str]:
    resources = statement.get("predicate", {}).get("resources", [])
    return {str(r.get("name")): str(r.get("digest")) for r in resources if isinstance(r, dict)}


def signature_verifier(
    public_key: str | os.PathLike[str],
) -> Callable[[str | os.PathLike[str]], Verification]:
    """A verifier for :func:`mlwarden.models.loading.load_model` (``verify=``).

    It runs :func:`verify_before_load` with ``public_key`` on the model file, so the file is read
    only after a signature by that key covers it.
    """

    def verify(model_file: str | os.PathLike[str]) -> Verification:
        return verify_before_load(model_file, public_key)

    return verify


def verify_before_load(
    model_file: str | os.PathLike[str], public_key: str | os.PathLike[str]
) -> Verification:
    """Verify the signature that covers a model file, before it is loaded.

    The file's own signature (``FILE.sig``) is used when it exists; otherwise the signature of
    its folder (``FOLDER/model.sig``, which also covers the ``.mlwarden.json`` sidecar), which
    must list the file.

    Raises
    ------
    SignatureError
        No signature covers the file, or the signature does not verify.
    """
    path = Path(model_file)
    own = default_signature_path(path)
    if own.is_file():
        return verify_model(path, public_key=public_key, signature=own)
    folder_signature = path.parent / DIRECTORY_SIGNATURE_NAME
    if folder_signature.is_file():
        result = verify_model(path.parent, public_key=public_key, signature=folder_signature)
        if path.name not in result.files:
            raise SignatureError(
                f"{path} is not covered by the signature {folder_signature} of its folder"
            )
        return result
    raise SignatureError(
        f"refusing to load {path}: a signature is required but neither {own} nor "
        f"{folder_signature} exists (sign it with mlwarden sign)"
    )
