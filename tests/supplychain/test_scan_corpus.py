"""A corpus of malicious artifacts: every one is caught, and scanning never runs any of them.

Each payload would create its own canary file when loaded. The scan tests check that the canary
never appears; a positive control loads the same payloads with their real loaders in a
subprocess and checks that the canaries do appear, so the corpus is known to be live.
"""

from __future__ import annotations

import json
import os
import pickle
import shlex
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan import scan_file, scan_paths


class ExecPayload:
    """Unpickling runs ``exec`` of code that creates the canary."""

    def __init__(self, canary: Path) -> None:
        self.canary = canary

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (f"open({str(self.canary)!r}, 'w').close()",))


class SystemPayload(ExecPayload):
    """Unpickling runs a shell command (``os.system``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.canary))}",))


class SubprocessPayload(ExecPayload):
    """Unpickling runs a program (``subprocess.call``)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (subprocess.call, (["touch", str(self.canary)],))


class NestedPayload(ExecPayload):
    """Unpickling calls ``pickle.loads`` on an inner malicious pickle."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (pickle.loads, (pickle.dumps(ExecPayload(self.canary), protocol=4),))


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = text.encode("utf-8")
    return b"\x8c" + bytes([len(data)]) + data


def _code(canary: Path) -> str:
    return f"open({str(canary)!r}, 'w').close()"


@dataclass(frozen=True)
class Payload:
    """One corpus entry: how to write it, how it is loaded for real, what the scan must say."""

    filename: str
    write: Callable[[Path, Path], None]
    loader: str | None  # pickle, torch, joblib, numpy; None when not directly loadable
    rule: str
    detail: str = ""


def _pickled(obj_type: type, protocol: int) -> Callable[[Path, Path], None]:
    def write(path: Path, canary: Path) -> None:
        path.write_bytes(pickle.dumps(obj_type(canary), protocol=protocol))

    return write


def _raw(build: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    def write(path: Path, canary: Path) -> None:
        path.write_bytes(build(canary))

    return write


def _inst(canary: Path) -> bytes:
    return b"(S'touch " + str(canary).encode() + b"'\nios\nsystem\n."


def _obj(canary: Path) -> bytes:
    return b"(cos\nsystem\nS'touch " + str(canary).encode() + b"'\no."


def _newobj(canary: Path) -> bytes:
    return b"\x80\x02csubprocess\nPopen\n)\x81."


def _newobj_ex(canary: Path) -> bytes:
    return b"\x80\x04" + _u("subprocess") + _u("Popen") + b"\x93)}\x92."


def _memo_stack_global(canary: Path) -> bytes:
    # 'builtins' and 'exec' are memoised, popped, buried under noise, then fetched back
    return (
        b"\x80\x04"
        + _u("builtins")
        + b"\x94"  # MEMOIZE -> 0
        + b"0"  # POP
        + _u("exec")
        + b"\x94"  # MEMOIZE -> 1
        + b"0"
        + _u("collections")
        + b"0"
        + b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL
        + _u(_code(canary))
        + b"\x85R."  # TUPLE1, REDUCE, STOP
    )


def _put_get_stack_global(canary: Path) -> bytes:
    # text PUT/GET memo in a stream without PROTO, then STACK_GLOBAL
    return b"Vos\np0\n0Vsystem\np1\n0g0\ng1\n\x93(Vtouch " + str(canary).encode() + b"\ntR."


def _getattr_chain(canary: Path) -> bytes:
    # getattr(__import__('os'), 'system')('touch canary')
    return (
        b"\x80\x02cbuiltins\ngetattr\n(cbuiltins\n__import__\n(Vos\ntRVsystem\ntR(Vtouch "
        + str(canary).encode()
        + b"\ntR."
    )


def _dotted_name(canary: Path) -> bytes:
    # posixpath looks harmless; the attribute path posixpath.os.system is os.system
    return (
        b"\x80\x04"
        + _u("posixpath")
        + _u("os.system")
        + b"\x93"
        + _u(f"touch {shlex.quote(str(canary))}")
        + b"\x85R."
    )


def _truncated(canary: Path) -> bytes:
    # the payload runs, then the loader fails on the missing STOP
    return pickle.dumps(ExecPayload(canary), protocol=2)[:-1] + b"N"


def _extension(canary: Path) -> bytes:
    return b"\x80\x02\x82\x01)R."  # EXT1 code 1, called


def _global_mutation(canary: Path) -> bytes:
    # BUILD on the allow-listed class itself: patches argparse.Namespace for every later use
    return b"\x80\x02cargparse\nNamespace\nN}(V__init__\ncos\nsystem\nu\x86b."


def _torch_zip(path: Path, canary: Path) -> None:
    torch.save({"weight": torch.zeros(3), "extra": ExecPayload(canary)}, path)


def _torch_legacy(path: Path, canary: Path) -> None:
    torch.save(
        {"weight": torch.zeros(3), "extra": SystemPayload(canary)},
        path,
        _use_new_zipfile_serialization=False,
    )


def _zip_in_zip(path: Path, canary: Path) -> None:
    inner = path.with_suffix(".inner.pt")
    _torch_zip(inner, canary)
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(inner, "bundle/checkpoint.pt")
    inner.unlink()


def _joblib(path: Path, canary: Path) -> None:
    joblib.dump({"coef": np.arange(6.0).reshape(2, 3), "extra": ExecPayload(canary)}, path)


def _joblib_zlib(path: Path, canary: Path) -> None:
    joblib.dump({"coef": np.arange(4.0), "extra": ExecPayload(canary)}, path, compress=3)


def _npy(path: Path, canary: Path) -> None:
    np.save(path, np.array([1, ExecPayload(canary)], dtype=object), allow_pickle=True)


def _npz(path: Path, canary: Path) -> None:
    np.savez(path, ok=np.ones(3), bad=np.array([ExecPayload(canary)], dtype=object))


DANGEROUS = "pickle.dangerous-global"
PAYLOADS: dict[str, Payload] = {
    **{
        f"reduce-exec-protocol-{p}": Payload(
            f"exec-p{p}.pkl", _pickled(ExecPayload, p), "pickle", DANGEROUS, "builtins.exec"
        )
        for p in range(6)
    },
    "reduce-os-system": Payload(
        "system.pkl", _pickled(SystemPayload, 2), "pickle", DANGEROUS, "posix.system"
    ),
    "reduce-subprocess": Payload(
        "subprocess.pkl", _pickled(SubprocessPayload, 4), "pickle", DANGEROUS, "subprocess.call"
    ),
    "inst": Payload("inst.pkl", _raw(_inst), "pickle", DANGEROUS, "os.system"),
    "obj": Payload("obj.pkl", _raw(_obj), "pickle", DANGEROUS, "os.system"),
    "newobj": Payload("newobj.pkl", _raw(_newobj), None, DANGEROUS, "subprocess.Popen"),
    "newobj-ex": Payload("newobj_ex.pkl", _raw(_newobj_ex), None, DANGEROUS, "subprocess.Popen"),
    "stack-global-memoize": Payload(
        "memo.pkl", _raw(_memo_stack_global), "pickle", DANGEROUS, "builtins.exec"
    ),
    "stack-global-put-get": Payload(
        "putget.pkl", _raw(_put_get_stack_global), "pickle", DANGEROUS, "os.system"
    ),
    "getattr-chain": Payload("getattr.pkl", _raw(_getattr_chain), "pickle", "pickle.indirect-call"),
    "dotted-name": Payload(
        "dotted.pkl", _raw(_dotted_name), "pickle", DANGEROUS, "posixpath.os.system"
    ),
    "nested-pickle-loads": Payload(
        "nested.pkl", _pickled(NestedPayload, 4), "pickle", DANGEROUS, "#nested@"
    ),
    "nested-protocol-2-bytes": Payload(
        "nested_p2.pkl", _pickled(NestedPayload, 2), "pickle", DANGEROUS, "#nested@"
    ),
    "truncated-after-payload": Payload(
        "truncated.pkl", _raw(_truncated), "pickle", "pickle.malformed"
    ),
    "extension-registry": Payload("ext.pkl", _raw(_extension), None, "pickle.extension-global"),
    "global-mutation": Payload(
        "mutation.pkl", _raw(_global_mutation), None, "pickle.global-mutation"
    ),
    "torch-zip": Payload("model.pt", _torch_zip, "torch", DANGEROUS, "data.pkl"),
    "torch-legacy": Payload("legacy.pth", _torch_legacy, "torch", DANGEROUS, "posix.system"),
    "torch-zip-in-zip": Payload("bundle.zip", _zip_in_zip, None, DANGEROUS, "checkpoint.pt!"),
    "joblib": Payload("model.joblib", _joblib, "joblib", DANGEROUS, "builtins.exec"),
    "joblib-zlib": Payload("model_z.joblib", _joblib_zlib, "joblib", DANGEROUS, "builtins.exec"),
    "npy-object-array": Payload("objects.npy", _npy, "numpy", DANGEROUS, "builtins.exec"),
    "npz-object-array": Payload("arrays.npz", _npz, "numpy", DANGEROUS, "bad.npy"),
}


def build_corpus(root: Path, canaries: Path) -> dict[str, tuple[Path, Path]]:
    """Write every payload into ``root``; returns name -> (file, canary it would create)."""
    root.mkdir(parents=True, exist_ok=True)
    canaries.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, payload in PAYLOADS.items():
        path, canary = root / payload.filename, canaries / f"{name}.ran"
        payload.write(path, canary)
        built[name] = (path, canary)
    return built


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    root = tmp_path_factory.mktemp("corpus")
    return build_corpus(root / "files", root / "canaries")


@pytest.mark.parametrize("name", sorted(PAYLOADS))
def test_payload_is_caught_and_never_runs(name: str, corpus: dict[str, tuple[Path, Path]]) -> None:
    path, canary = corpus[name]
    payload = PAYLOADS[name]
    record = scan_file(path)
    assert record.max_severity is not None
    assert record.max_severity.rank >= Severity.HIGH.rank, [i.message for i in record.issues]
    matching = [i for i in record.issues if i.rule == payload.rule]
    assert matching, f"{name}: no {payload.rule} in {[i.rule for i in record.issues]}"
    if payload.detail:
        text = " ".join(f"{i.path} {i.message}" for i in record.issues)
        assert payload.detail in text
    assert not canary.exists()


def test_scanning_the_whole_corpus_runs_nothing(corpus: dict[str, tuple[Path, Path]]) -> None:
    root = next(iter(corpus.values()))[0].parent
    report = scan_paths([root])
    flagged = {f.path for f in report.files if f.max_severity and f.max_severity.rank >= 3}
    assert flagged == {str(path) for path, _ in corpus.values()}
    assert not any(canary.exists() for _, canary in corpus.values())


_LOAD_ALL = """
import json, pickle, sys
import numpy as np
manifest = json.loads(sys.argv[1])
for path, loader in manifest:
    try:
        if loader == "pickle":
            with open(path, "rb") as fh:
                pickle.load(fh)
        elif loader == "torch":
            import torch
            torch.load(path, weights_only=False)
        elif loader == "joblib":
            import joblib
            joblib.load(path)
        elif loader == "numpy":
            data = np.load(path, allow_pickle=True)
            if hasattr(data, "files"):
                [data[k] for k in data.files]
    except Exception as exc:
        print(path, type(exc).__name__, exc)
"""


def test_corpus_payloads_are_live(tmp_path: Path) -> None:
    """Positive control: the real loaders do run the payloads the scanner catches."""
    built = build_corpus(tmp_path / "files", tmp_path / "canaries")
    manifest = [
        (str(path), PAYLOADS[name].loader)
        for name, (path, _) in built.items()
        if PAYLOADS[name].loader is not None
    ]
    subprocess.run(
        [sys.executable, "-c", _LOAD_ALL, json.dumps(manifest)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    dead = [
        name
        for name, (_, canary) in built.items()
        if PAYLOADS[name].loader is not None and not canary.exists()
    ]
    assert dead == []
