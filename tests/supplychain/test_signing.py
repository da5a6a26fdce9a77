"""Signing and verification on top of OpenSSF model-signing, interoperable with its CLI."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mlwarden.errors import ConfigError, SignatureError
from mlwarden.supplychain.signing import (
    KeyPair,
    generate_keypair,
    sign_model,
    verify_before_load,
    verify_model,
)

MODEL_SIGNING_CLI = Path(sys.executable).with_name("model_signing")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "tokenizer").mkdir(parents=True)
    (root / "weights.safetensors").write_bytes(b"\x00" * 64)
    (root / "config.json").write_text('{"layers": 2}')
    (root / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    return root


def _cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODEL_SIGNING_CLI), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_keygen_writes_a_p256_pair_with_a_private_key_only_the_owner_reads(
    tmp_path: Path,
) -> None:
    pair = generate_keypair(tmp_path / "k")
    private = serialization.load_pem_private_key(pair.private_key.read_bytes(), None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    assert stat.S_IMODE(pair.private_key.stat().st_mode) == 0o600
    public = serialization.load_pem_public_key(pair.public_key.read_bytes())
    assert public == private.public_key()


def test_keygen_never_overwrites_keys_unless_forced(tmp_path: Path) -> None:
    first = generate_keypair(tmp_path)
    before = first.private_key.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        generate_keypair(tmp_path)
    assert first.private_key.read_bytes() == before
    generate_keypair(tmp_path, overwrite=True)
    assert first.private_key.read_bytes() != before


def test_a_signed_folder_verifies_and_lists_its_files(model_dir: Path, keys: KeyPair) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    assert signature == model_dir / "model.sig"
    result = verify_model(model_dir, public_key=keys.public_key)
    assert result.files == ("config.json", "tokenizer/vocab.txt", "weights.safetensors")
    assert result.signer.startswith("key sha256:")


def test_a_signed_file_verifies(model_dir: Path, keys: KeyPair) -> None:
    model = model_dir / "weights.safetensors"
    assert sign_model(model, private_key=keys.private_key) == model.with_name(model.name + ".sig")
    assert verify_model(model, public_key=keys.public_key).files == (".",)


def test_an_encrypted_private_key_signs_with_its_password(tmp_path: Path, model_dir: Path) -> None:
    pair = generate_keypair(tmp_path / "k", password="s3cret")
    with pytest.raises(ConfigError):
        sign_model(model_dir, private_key=pair.private_key)
    sign_model(model_dir, private_key=pair.private_key, password="s3cret")
    verify_model(model_dir, public_key=pair.public_key)


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (lambda m: (m / "config.json").write_text('{"layers": 3}'), "changed: config.json"),
        (lambda m: (m / "extra.py").write_text("import os"), "added: extra.py"),
        (lambda m: (m / "tokenizer" / "vocab.txt").unlink(), "removed: tokenizer/vocab.txt"),
        (
            lambda m: (m / "config.json").rename(m / "config2.json"),
            "renamed: config.json -> config2.json",
        ),
    ],
    ids=["changed", "added", "removed", "renamed"],
)
def test_any_change_to_a_signed_folder_is_refused_naming_the_file(
    model_dir: Path, keys: KeyPair, tamper: object, expected: str
) -> None:
    sign_model(model_dir, private_key=keys.private_key)
    tamper(model_dir)  # type: ignore[operator]
    with pytest.raises(SignatureError, match=re.escape(expected)):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_renamed_single_file_is_refused(model_dir: Path, keys: KeyPair) -> None:
    model = model_dir / "weights.safetensors"
    signature = sign_model(model, private_key=keys.private_key)
    moved = model.rename(model_dir / "weights-v2.safetensors")
    with pytest.raises(
        SignatureError, match=re.escape("renamed: weights.safetensors -> weights-v2")
    ):
        verify_model(moved, public_key=keys.public_key, signature=signature)


def test_a_signature_by_another_key_is_refused(
    model_dir: Path, keys: KeyPair, other_keys: KeyPair
) -> None:
    sign_model(model_dir, private_key=other_keys.private_key)
    with pytest.raises(SignatureError, match="another key"):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_damaged_signature_is_refused(model_dir: Path, keys: KeyPair) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    bundle = json.loads(signature.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[10] ^= 0xFF
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="signature bytes do not match") as caught:
        verify_model(model_dir, public_key=keys.public_key)
    assert "forged or damaged" in str(caught.value)
    assert "get the original model.sig" in str(caught.value)


def test_a_forged_manifest_is_refused(model_dir: Path, keys: KeyPair) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"][0]["digest"] = "0" * 64
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match="changed after signing"):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_bundle_with_a_broken_field_names_the_field(model_dir: Path, keys: KeyPair) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    bundle = json.loads(signature.read_text())
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = "!!not base64"
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureError, match=r"dsseEnvelope\.signatures\.0\.sig"):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_truncated_signature_file_is_refused(model_dir: Path, keys: KeyPair) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    signature.write_text(signature.read_text()[:50])
    with pytest.raises(SignatureError, match="damaged"):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_missing_signature_is_refused(model_dir: Path, keys: KeyPair) -> None:
    with pytest.raises(SignatureError, match="not signed"):
        verify_model(model_dir, public_key=keys.public_key)


def test_a_signature_made_here_verifies_with_the_model_signing_cli(
    model_dir: Path, keys: KeyPair
) -> None:
    signature = sign_model(model_dir, private_key=keys.private_key)
    done = _cli(
        "verify", "key", model_dir, "--signature", signature, "--public_key", keys.public_key
    )
    assert done.returncode == 0, done.stderr
    (model_dir / "config.json").write_text("{}")
    done = _cli(
        "verify", "key", model_dir, "--signature", signature, "--public_key", keys.public_key
    )
    assert done.returncode == 1
    assert "config.json" in done.stderr


def test_a_signature_made_by_the_model_signing_cli_verifies_here(
    model_dir: Path, keys: KeyPair
) -> None:
    signature = model_dir / "model.sig"
    done = _cli(
        "sign", "key", model_dir, "--signature", signature, "--private_key", keys.private_key
    )
    assert done.returncode == 0, done.stderr
    result = verify_model(model_dir, public_key=keys.public_key)
    assert "config.json" in result.files
    (model_dir / "tokenizer" / "merges.txt").write_text("x")
    with pytest.raises(SignatureError, match=re.escape("added: tokenizer/merges.txt")):
        verify_model(model_dir, public_key=keys.public_key)


# -- certificates ------------------------------------------------------------------------------


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool,
) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A root CA, an intermediate CA and a code-signing leaf with its private key."""
    root = tmp_path_factory.mktemp("pki")
    root_key, mid_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    other_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "root": _pem(_cert("Test Root", root_key, None, ca=True), root / "root.pem"),
        "intermediate": _pem(
            _cert("Test Intermediate", mid_key, ("Test Root", root_key), ca=True),
            root / "intermediate.pem",
        ),
        "leaf": _pem(
            _cert("model-signer", leaf_key, ("Test Intermediate", mid_key), ca=False),
            root / "leaf.pem",
        ),
        "other_root": _pem(_cert("Other Root", other_key, None, ca=True), root / "other.pem"),
        "leaf_key": root / "leaf.key",
    }
    files["leaf_key"].write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def test_a_certificate_signature_verifies_against_its_root(
    model_dir: Path, pki: dict[str, Path]
) -> None:
    sign_model(
        model_dir,
        private_key=pki["leaf_key"],
        signing_certificate=pki["leaf"],
        certificate_chain=[pki["intermediate"]],
    )
    result = verify_model(model_dir, certificate_chain=[pki["root"]])
    assert result.signer == "certificate CN=model-signer"


def test_a_certificate_signature_from_an_untrusted_root_is_refused(
    model_dir: Path, pki: dict[str, Path]
) -> None:
    sign_model(
        model_dir,
        private_key=pki["leaf_key"],
        signing_certificate=pki["leaf"],
        certificate_chain=[pki["intermediate"]],
    )
    with pytest.raises(SignatureError, match="not trusted"):
        verify_model(model_dir, certificate_chain=[pki["other_root"]])


def test_a_certificate_signature_made_here_verifies_with_the_model_signing_cli(
    model_dir: Path, pki: dict[str, Path]
) -> None:
    signature = sign_model(
        model_dir,
        private_key=pki["leaf_key"],
        signing_certificate=pki["leaf"],
        certificate_chain=[pki["intermediate"]],
    )
    done = _cli(
        "verify", "certificate", model_dir, "--signature", signature,
        "--certificate_chain", pki["root"],
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_a_certificate_that_does_not_match_the_key_is_refused(
    model_dir: Path, pki: dict[str, Path], keys: KeyPair
) -> None:
    with pytest.raises(ConfigError, match="does not match"):
        sign_model(model_dir, private_key=keys.private_key, signing_certificate=pki["leaf"])


# -- signature required before loading ----------------------------------------------------------


def test_loading_requires_a_signature_when_asked(tmp_path: Path, keys: KeyPair) -> None:
    from mlwarden.models.loading import load_model
    from mlwarden.supplychain.signing import signature_verifier

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not even onnx")
    verify = signature_verifier(keys.public_key)
    with pytest.raises(SignatureError, match="a signature is required"):
        load_model(model, input_shape=(2,), verify=verify)
    with pytest.raises(SignatureError, match="no signature"):
        load_model("zoo:digits-cnn", verify=verify)


def test_a_folder_signature_covers_a_model_file_and_its_sidecar(
    model_dir: Path, keys: KeyPair
) -> None:
    sign_model(model_dir, private_key=keys.private_key)
    result = verify_before_load(model_dir / "weights.safetensors", keys.public_key)
    assert "weights.safetensors" in result.files
    (model_dir / "config.json").write_text("{}")
    with pytest.raises(SignatureError, match=re.escape("changed: config.json")):
        verify_before_load(model_dir / "weights.safetensors", keys.public_key)


def test_a_folder_with_a_symlink_is_refused_rather_than_followed(
    model_dir: Path, keys: KeyPair, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not part of the model")
    (model_dir / "link.txt").symlink_to(outside)
    with pytest.raises(ConfigError, match=r"link\.txt is a symbolic link") as caught:
        sign_model(model_dir, private_key=keys.private_key)
    assert "allow_symlinks" not in str(caught.value)  # an option mlwarden does not have
    assert "cp -L" in str(caught.value)
