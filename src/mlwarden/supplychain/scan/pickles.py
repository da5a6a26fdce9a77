"""Judge a pickle by reading its opcodes; nothing in it is ever imported, called or unpickled.

The opcodes are read with :func:`pickletools.genops` and run on a *symbolic* stack: strings,
numbers, tuples and the memo are tracked exactly, everything else is a placeholder. That is what
resolves ``STACK_GLOBAL`` even when its module and name strings come back from the memo
(``MEMOIZE``/``PUT`` ... ``GET``), sees which imported global each ``REDUCE``, ``NEWOBJ``,
``NEWOBJ_EX``, ``OBJ``, ``INST`` and ``BUILD`` calls, and notices calls of objects that are
themselves results of calls (the ``getattr`` pattern). Every global is judged by
:mod:`mlwarden.supplychain.scan.policy`.

Stream layouts are followed as every loader that may read them does:

* consecutive pickles (legacy ``torch.save`` writes five, all unpickled by ``torch.load``, then
  raw tensor bytes); after a pickle's STOP, further bytes that import or call anything before
  they break are reported, since a reader that loads in a loop runs them;
* joblib files, whose array bytes follow each ``NumpyArrayWrapper`` inside the pickle stream
  (object arrays as a nested pickle, which is scanned). ``pickle.load`` and ``torch.load`` do
  not skip those bytes, so the stream is read a second time without skipping them;
* frames (protocol 4+): ``pickle.loads`` and ``pickletools`` read across a frame's end, but
  CPython's unpickler reading a *file* drops the rest of the frame when an argument crosses it.
  No pickler writes such an argument; it is reported and the file reader's view is scanned too;
* pickles embedded as bytes arguments of ``pickle.loads``, ``torch.load`` and friends.

If the symbolic stack ever disagrees with the stream, the rest is still read opcode by opcode and
every global found is reported, so a confusing stream cannot hide a payload. A stream that breaks
is scanned up to the point where CPython's unpickler stops; if nothing was imported or called by
then, unpickling it runs nothing (``PickleScan.actions`` is 0), which is how the scanner tells a
file that is not a pickle from a broken one.
"""

from __future__ import annotations

import contextlib
import io
import logging
import mmap
import pickletools
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from mlwarden.report.findings import Severity
from mlwarden.supplychain.scan.formats import dtype_code_info
from mlwarden.supplychain.scan.policy import calls_argument, classify_global, is_nested_loader
from mlwarden.supplychain.scan.results import GlobalUse, ScanIssue

__all__ = ["PickleScan", "scan_pickle_bytes", "scan_pickle_stream"]

logger = logging.getLogger(__name__)

_KEEP_BYTES = 64 << 20  # bytes arguments up to this size are kept for nested scanning
_MAX_LINE = 64 << 20
_MAX_READ = 1 << 30
_MAX_DEPTH = 6
_JOBLIB_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys_info, the object, the storage keys
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
# how each opcode's argument is read (pickletools' ArgumentDescriptor.n), for frame checks
_ARG_SIZE = {op.name: op.arg.n if op.arg is not None else 0 for op in pickletools.opcodes}
_TWO_LINES = frozenset({"GLOBAL", "INST"})
_CODE2OP = {op.code: op for op in pickletools.opcodes}


class _Mark:
    """The MARK pushed by ``(``."""


class _Opaque:
    """A value whose content does not matter to the analysis (lists, sets, buffers, ...)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


class _Global:
    """What ``GLOBAL``/``STACK_GLOBAL`` pushes (``importable``: its names are identifiers)."""

    __slots__ = ("fullname", "importable", "offset")

    def __init__(self, fullname: str, offset: int, importable: bool = True) -> None:
        self.fullname = fullname
        self.offset = offset
        self.importable = importable


class _Obj:
    """The result of calling something (``REDUCE``, ``NEWOBJ``, ...)."""

    __slots__ = ("args", "callee", "offset", "opcode", "state")

    def __init__(self, callee: Any, args: Any, opcode: str, offset: int) -> None:
        self.callee = callee
        self.args = args
        self.opcode = opcode
        self.offset = offset
        self.state: Any = None

    @property
    def type_name(self) -> str:
        """The class or function the object came from, when known."""
        callee = self.callee
        if isinstance(callee, _Global):
            if callee.fullname in {"copyreg._reconstructor", "copyreg.__newobj__"} and (
                isinstance(self.args, tuple) and self.args and isinstance(self.args[0], _Global)
            ):
                return self.args[0].fullname
            return callee.fullname
        return "?"


class _DictVal:
    """A dict; string keys are kept (bounded) so that ``BUILD`` states can be read."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def set(self, key: Any, value: Any) -> None:
        if isinstance(key, str) and len(self.items) < 256:
            self.items[key] = value


class _StackError(Exception):
    """The symbolic stack cannot follow the stream.

    ``definite``: CPython's unpickler raises at the same opcode (stack underflow, no MARK, a
    missing memo key), so nothing after it runs; otherwise only the scanner's model is lost.
    """

    def __init__(self, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.definite = definite


class _Reader:
    """A file wrapper whose reads never ask for more than what is left (no huge allocations)."""

    def __init__(self, fh: Any, size: int | None) -> None:
        self._fh = fh
        self._size = size
        self._pos = 0
        self._pending = b""
        self.stream = self

    def _clamp(self, n: int) -> int:
        if self._size is None:
            return min(n, _MAX_READ)
        return max(0, min(n, self._size - self._pos))

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = _MAX_READ
        n = self._clamp(n)
        if self._pending:
            head, self._pending = self._pending[:n], self._pending[n:]
            data = head + (self._fh.read(n - len(head)) if n > len(head) else b"")
        else:
            data = self._fh.read(n)
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self._pending:
            first = self.read(1)
            if first == b"\n":
                return first
            rest = self._fh.readline(self._clamp(_MAX_LINE))
            self._pos += len(rest)
            return first + rest
        data = self._fh.readline(self._clamp(_MAX_LINE))
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def peek_byte(self) -> bytes:
        data = self.read(1)
        if data:
            self._pos -= 1
            self._pending = data + self._pending
        return data

    def skip(self, n: int) -> bool:
        """Skip ``n`` bytes; False when fewer are left."""
        if self._size is not None and n > self._size - self._pos:
            return False
        if self._pending:
            n -= len(self.read(min(n, len(self._pending))))
        if self._size is not None and n > 0 and self._fh.seekable():
            self._fh.seek(n, io.SEEK_CUR)
            self._pos += n
            return True
        while n > 0:
            chunk = self.read(min(n, 16 << 20))
            if not chunk:
                return False
            n -= len(chunk)
        return True


class _Direct:
    """Cursor helpers over a stream genops can read directly (``BytesIO`` or ``mmap``).

    Both return at most the bytes that are left from ``read(n)``, whatever ``n`` a crafted
    length field asks for, so no read can allocate more than the file holds.
    """

    def __init__(self, stream: Any, end: int) -> None:
        self.stream = stream
        self._end = end

    @property
    def end(self) -> int:
        """The offset the readable bytes end at."""
        return self._end

    def read(self, n: int) -> bytes:
        return bytes(self.stream.read(n))

    def tell(self) -> int:
        return int(self.stream.tell())

    def peek_byte(self) -> bytes:
        position = self.stream.tell()
        data = bytes(self.stream.read(1))
        self.stream.seek(position)
        return data

    def skip(self, n: int) -> bool:
        position = self.stream.tell()
        if n > self._end - position:
            return False
        self.stream.seek(position + n)
        return True


@dataclass
class PickleScan:
    """What the opcodes of one pickle stream (and pickles nested in it) import and call.

    Attributes
    ----------
    issues
        Everything worth reporting, globals included.
    globals
        Every imported global by full name (allow-listed ones too).
    pickles
        How many consecutive pickles the stream held.
    protocols
        The protocol of each (``PROTO`` opcode; 0 or 1 when absent, reported as 0).
    kind
        ``pickle``, ``joblib`` or ``pytorch-legacy`` as the stream's layout showed.
    """

    issues: list[ScanIssue] = field(default_factory=list)
    globals: dict[str, GlobalUse] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pickles: int = 0
    opcodes: int = 0
    protocols: list[int] = field(default_factory=list)
    kind: str = "pickle"
    complete: bool = True
    actions: int = 0
    error_offset: int | None = None
    error: str | None = None

    def merge(self, other: PickleScan) -> None:
        """Fold a nested scan into this one."""
        self.issues.extend(other.issues)
        self.notes.extend(other.notes)
        self.opcodes += other.opcodes
        self.actions += other.actions
        for key, use in other.globals.items():
            mine = self.globals.get(key)
            if mine is None:
                self.globals[key] = use
            else:
                mine.count += use.count
                mine.calls |= use.calls


class _Segment:
    """One pickle (up to its STOP) run on the symbolic stack."""

    def __init__(
        self,
        reader: _Reader | _Direct,
        path: str,
        depth: int,
        *,
        context: str = "pickle",
        joblib: bool = True,
    ) -> None:
        self.reader = reader
        self.path = path
        self.depth = depth
        self.context = context
        self.joblib = joblib
        self.actions = 0
        self.halted = False  # CPython's unpickler has stopped: later opcodes never run
        self.frame_end: int | None = None
        self.frame_crossings: list[tuple[int, int]] = []
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.uses: dict[str, GlobalUse] = {}
        self.issues: list[ScanIssue] = []
        self.nested: list[PickleScan] = []
        self.protocol = 0
        self.opcodes = 0
        self.result: Any = None
        self.joblib_arrays = 0
        self.recent_strings: deque[str] = deque(maxlen=2)
        self.symbolic = True
        self.error: str | None = None
        self.error_offset: int | None = None

    # -- reporting ---------------------------------------------------------------------------

    def issue(
        self, rule: str, severity: Severity, message: str, offset: int | None, **details: Any
    ) -> None:
        self.issues.append(ScanIssue(rule, severity, self.path, message, offset, dict(details)))

    def import_global(self, module: str, name: str, offset: int, opcode: str) -> _Global:
        importable = bool(_IDENTIFIER_PATH.match(module) and _IDENTIFIER_PATH.match(name))
        if importable and not self.halted:
            self.actions += 1  # a name no module can have imports nothing
        verdict = classify_global(module, name, context=self.context)
        key = verdict.fullname
        use = self.uses.get(key)
        if use is None:
            use = GlobalUse(verdict.module, verdict.name, verdict.severity, verdict.reason)
            use.first_offset = offset
            self.uses[key] = use
        use.count += 1
        if opcode == "INST":
            use.calls.add("INST")
        return _Global(key, offset, importable)

    def call(self, callee: Any, args: Any, opcode: str, offset: int) -> _Obj:
        if not self.halted and (not isinstance(callee, _Global) or callee.importable):
            self.actions += 1
        if isinstance(callee, _Global):
            self.uses[callee.fullname].calls.add(opcode)
            self.check_called_arguments(callee, args, opcode, offset)
            if callee.fullname in {"copyreg._reconstructor", "copyreg.__newobj__"} and (
                isinstance(args, tuple)
            ):
                for target in args[:2]:
                    if isinstance(target, _Global):
                        self.uses[target.fullname].calls.add(f"{opcode}({callee.fullname})")
            module, _, name = callee.fullname.rpartition(".")
            if isinstance(args, tuple) and args and is_nested_loader(module, name):
                self.scan_nested(args[0], offset, callee.fullname)
        elif isinstance(callee, _Obj):
            self.issue(
                "pickle.indirect-call",
                Severity.HIGH,
                f"{opcode} at offset {offset} calls an object that an earlier call returned "
                f"(from {callee.type_name}); this is how getattr-style payloads reach any "
                "function",
                offset,
                opcode=opcode,
                source=callee.type_name,
            )
        elif isinstance(callee, _Opaque) and callee.kind == "persistent":
            self.issue(
                "pickle.indirect-call",
                Severity.HIGH,
                f"{opcode} at offset {offset} calls an object returned by the loader's "
                "persistent_load hook",
                offset,
                opcode=opcode,
            )
        return _Obj(callee, args, opcode, offset)

    def check_called_arguments(self, callee: _Global, args: Any, opcode: str, offset: int) -> None:
        """An allow-listed helper that calls its argument is only as safe as that argument."""
        positions = calls_argument(callee.fullname)
        if not positions or not isinstance(args, tuple):
            return
        for position in positions:
            if position >= len(args):
                continue
            value = args[position]
            if isinstance(value, _Global):
                # allow-listed, or already reported at its own severity when imported
                continue
            if _is_plain_value(value):
                continue
            if (
                isinstance(value, _Obj)
                and isinstance(value.callee, _Global)
                and value.callee.fullname in self.uses
                and self.uses[value.callee.fullname].severity is None
            ):
                continue  # an object an allow-listed constructor built (a BitGenerator)
            what = value.type_name if isinstance(value, _Obj) else type(value).__name__.strip("_")
            self.issue(
                "pickle.unsafe-callable-argument",
                Severity.CRITICAL,
                f"{opcode} at offset {offset} calls {callee.fullname}, which calls its argument "
                f"#{position}; that argument is computed at load time ({what}), not an "
                "allow-listed global, so it can be any function (eval, a file writer, ...)",
                offset,
                callee=callee.fullname,
                argument=position,
            )

    def scan_nested(self, payload: Any, offset: int, loader: str) -> None:
        data = _as_bytes(payload)
        if data is None:
            return
        if self.depth >= _MAX_DEPTH:
            self.issue(
                "pickle.nesting-too-deep",
                Severity.HIGH,
                f"{loader} at offset {offset} unpickles data nested more than {_MAX_DEPTH} levels "
                "deep; the innermost level is not scanned",
                offset,
            )
            return
        nested = scan_pickle_bytes(data, path=f"{self.path}#nested@{offset}", depth=self.depth + 1)
        self.nested.append(nested)

    # -- the symbolic machine ----------------------------------------------------------------

    def pop(self) -> Any:
        if not self.stack:
            raise _StackError("stack underflow")
        return self.stack.pop()

    def pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise _StackError("no MARK to pop to")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def top(self) -> Any:
        if not self.stack:
            raise _StackError("stack underflow")
        return self.stack[-1]

    def run(self) -> bool:
        """Read one pickle; True when it ended with STOP."""
        handlers = _HANDLERS
        count = 0
        try:
            stream: Any = self.reader.stream
            for opcode, arg, offset in pickletools.genops(stream):
                pos = int(offset or 0)
                count += 1
                name = opcode.name
                if self.frame_end is not None:
                    self.check_frame(name, arg, pos)
                if self.symbolic:
                    try:
                        handlers[name](self, arg, pos)
                    except (_StackError, IndexError, KeyError, TypeError, ValueError) as exc:
                        self.halted = isinstance(exc, _StackError) and exc.definite
                        self.symbolic = False
                        self.error = f"{name}: {exc}"
                        self.error_offset = pos
                        self.raw_step(name, arg, pos)
                else:
                    self.raw_step(name, arg, pos)
        except ValueError as exc:  # genops: unknown opcode, truncated argument, no STOP
            if self.error is None:
                self.error = str(exc)
                self.error_offset = self.reader.tell()
            return False
        finally:
            self.opcodes += count
        return True

    def check_frame(self, name: str, arg: Any, pos: int) -> None:
        """Report an opcode whose argument crosses the end of the current frame."""
        frame_end = self.frame_end
        assert frame_end is not None
        if pos >= frame_end:
            self.frame_end = None
            return
        end = self.reader.tell()
        if end <= frame_end:
            return
        self.frame_end = None
        self.frame_crossings.append((pos, frame_end))
        self.issue(
            "pickle.frame-crossing",
            Severity.HIGH,
            f"{name} at offset {pos} reads its argument across the end of its frame (offset "
            f"{frame_end}); no pickler writes this, and CPython's unpickler reads it differently "
            "from a file than from bytes, which hides opcodes from scanners",
            pos,
        )

    def raw_step(self, name: str, arg: Any, pos: int) -> None:
        """Opcode-by-opcode fallback once the stack cannot be followed: report every global."""
        if name in {"REDUCE", "NEWOBJ", "NEWOBJ_EX", "OBJ", "BUILD"} and not self.halted:
            self.actions += 1
        elif name == "FRAME":
            self.frame_end = pos + 9 + int(arg)
        if name in {"GLOBAL", "INST"}:
            module, _, attr = str(arg).partition(" ")
            self.import_global(module, attr, pos, name)
        elif name == "STACK_GLOBAL":
            self.issue(
                "pickle.computed-global",
                Severity.HIGH,
                f"STACK_GLOBAL at offset {pos} imports a global whose name could not be "
                "followed through the stream",
                pos,
            )
            if len(self.recent_strings) == 2:
                self.import_global(self.recent_strings[0], self.recent_strings[1], pos, name)
        elif isinstance(arg, str) and name.endswith(("UNICODE", "STRING", "UNICODE8")):
            self.recent_strings.append(arg)

    # -- one handler per opcode (see _HANDLERS) ----------------------------------------------

    def op_push(self, arg: Any, pos: int) -> None:
        self.stack.append(arg)

    def op_push_str(self, arg: Any, pos: int) -> None:
        self.recent_strings.append(arg)
        self.stack.append(arg)

    def op_push_bytes(self, arg: Any, pos: int) -> None:
        self.stack.append(arg if len(arg) <= _KEEP_BYTES else _Opaque("bytes"))

    def op_put(self, arg: Any, pos: int) -> None:
        self.memo[arg] = self.top()

    def op_memoize(self, arg: Any, pos: int) -> None:
        self.memo[len(self.memo)] = self.top()

    def op_get(self, arg: Any, pos: int) -> None:
        if arg not in self.memo:
            raise _StackError(f"memo key {arg} is missing")
        self.stack.append(self.memo[arg])

    def op_mark(self, arg: Any, pos: int) -> None:
        self.metastack.append(self.stack)
        self.stack = []

    def op_empty_tuple(self, arg: Any, pos: int) -> None:
        self.stack.append(())

    def op_tuple1(self, arg: Any, pos: int) -> None:
        self.stack.append((self.pop(),))

    def op_tuple2(self, arg: Any, pos: int) -> None:
        b, a = self.pop(), self.pop()
        self.stack.append((a, b))

    def op_tuple3(self, arg: Any, pos: int) -> None:
        c, b, a = self.pop(), self.pop(), self.pop()
        self.stack.append((a, b, c))

    def op_tuple(self, arg: Any, pos: int) -> None:
        items = self.pop_mark()
        self.stack.append(tuple(items))

    def op_empty_container(self, arg: Any, pos: int) -> None:
        self.stack.append(_Opaque("container"))

    def op_container_from_mark(self, arg: Any, pos: int) -> None:
        self.pop_mark()
        self.stack.append(_Opaque("container"))

    def op_append(self, arg: Any, pos: int) -> None:
        self.pop()
        self.top()

    def op_extend(self, arg: Any, pos: int) -> None:
        self.pop_mark()
        self.top()

    def op_empty_dict(self, arg: Any, pos: int) -> None:
        self.stack.append(_DictVal())

    def op_dict(self, arg: Any, pos: int) -> None:
        items = self.pop_mark()
        value = _DictVal()
        for i in range(0, len(items) - 1, 2):
            value.set(items[i], items[i + 1])
        self.stack.append(value)

    def op_setitem(self, arg: Any, pos: int) -> None:
        value, key = self.pop(), self.pop()
        target = self.top()
        if isinstance(target, _DictVal):
            target.set(key, value)

    def op_setitems(self, arg: Any, pos: int) -> None:
        items = self.pop_mark()
        target = self.top()
        if isinstance(target, _DictVal):
            for i in range(0, len(items) - 1, 2):
                target.set(items[i], items[i + 1])

    def op_pop(self, arg: Any, pos: int) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self, arg: Any, pos: int) -> None:
        self.pop_mark()

    def op_dup(self, arg: Any, pos: int) -> None:
        self.stack.append(self.top())

    def op_global(self, arg: Any, pos: int) -> None:
        module, _, attr = str(arg).partition(" ")
        self.stack.append(self.import_global(module, attr, pos, "GLOBAL"))

    def op_stack_global(self, arg: Any, pos: int) -> None:
        attr, module = self.pop(), self.pop()
        if type(module) is str and type(attr) is str:
            self.stack.append(self.import_global(module, attr, pos, "STACK_GLOBAL"))
            return
        self.issue(
            "pickle.computed-global",
            Severity.HIGH,
            f"STACK_GLOBAL at offset {pos} imports a global whose module or name is computed "
            "at load time, so it cannot be checked",
            pos,
        )
        self.stack.append(_Opaque("global"))

    def op_inst(self, arg: Any, pos: int) -> None:
        module, _, attr = str(arg).partition(" ")
        args = tuple(self.pop_mark())
        callee = self.import_global(module, attr, pos, "INST")
        self.stack.append(self.call(callee, args, "INST", pos))

    def op_obj(self, arg: Any, pos: int) -> None:
        items = self.pop_mark()
        if not items:
            raise _StackError("OBJ without a class")
        self.stack.append(self.call(items[0], tuple(items[1:]), "OBJ", pos))

    def op_reduce(self, arg: Any, pos: int) -> None:
        args = self.pop()
        callee = self.pop()
        self.stack.append(self.call(callee, args, "REDUCE", pos))

    def op_newobj(self, arg: Any, pos: int) -> None:
        args = self.pop()
        callee = self.pop()
        self.stack.append(self.call(callee, args, "NEWOBJ", pos))

    def op_newobj_ex(self, arg: Any, pos: int) -> None:
        self.pop()
        args = self.pop()
        callee = self.pop()
        self.stack.append(self.call(callee, args, "NEWOBJ_EX", pos))

    def op_build(self, arg: Any, pos: int) -> None:
        state = self.pop()
        self.build(self.top(), state, pos)

    def op_persid(self, arg: Any, pos: int) -> None:
        self.stack.append(_Opaque("persistent"))

    def op_binpersid(self, arg: Any, pos: int) -> None:
        self.pop()
        self.stack.append(_Opaque("persistent"))

    def op_frame(self, arg: Any, pos: int) -> None:
        self.frame_end = pos + 9 + int(arg)

    def op_ext(self, arg: Any, pos: int) -> None:
        self.actions += 1
        self.issue(
            "pickle.extension-global",
            Severity.HIGH,
            f"EXT at offset {pos} imports global number {arg} from the copyreg extension "
            "registry, which cannot be checked without running the loader",
            pos,
            code=arg,
        )
        self.stack.append(_Opaque("global"))

    def op_next_buffer(self, arg: Any, pos: int) -> None:
        self.stack.append(_Opaque("buffer"))

    def op_proto(self, arg: Any, pos: int) -> None:
        self.protocol = int(arg)

    def op_stop(self, arg: Any, pos: int) -> None:
        self.result = self.pop()

    def op_nothing(self, arg: Any, pos: int) -> None:
        pass

    def build(self, inst: Any, state: Any, pos: int) -> None:
        if isinstance(inst, _Global):
            self.issue(
                "pickle.global-mutation",
                Severity.HIGH,
                f"BUILD at offset {pos} sets attributes on the imported object {inst.fullname} "
                "itself, which patches that object for every later use",
                pos,
                target=inst.fullname,
            )
            return
        if not isinstance(inst, _Obj):
            return
        inst.state = state
        type_name = inst.type_name
        if type_name in self.uses:
            self.uses[type_name].calls.add("BUILD")
        if type_name in _JOBLIB_WRAPPERS and self.joblib:
            self.skip_joblib_array(inst, state, pos)

    def skip_joblib_array(self, inst: _Obj, state: Any, pos: int) -> None:
        """Step over the array bytes joblib writes right after a ``NumpyArrayWrapper``."""
        info = _joblib_array_info(state)
        if info is None:
            raise _StackError("a joblib array whose shape or dtype cannot be read", definite=False)
        nbytes, has_object, aligned = info
        self.joblib_arrays += 1
        if has_object:
            nested = PickleScan()
            segment = _Segment(self.reader, self.path, self.depth + 1, context=self.context)
            completed = segment.run()
            _fold(nested, segment, mode="full", completed=completed)
            self.nested.append(nested)
            return
        if aligned:
            pad = self.reader.read(1)
            if len(pad) != 1 or not self.reader.skip(pad[0]):
                raise _StackError(
                    "joblib array padding runs past the end of the file", definite=False
                )
        if not self.reader.skip(nbytes):
            raise _StackError(
                f"joblib array of {nbytes} bytes runs past the end of the file", definite=False
            )


_HANDLERS: dict[str, Any] = {
    **dict.fromkeys(
        [
            "INT",
            "BININT",
            "BININT1",
            "BININT2",
            "LONG",
            "LONG1",
            "LONG4",
            "FLOAT",
            "BINFLOAT",
            "NONE",
            "NEWTRUE",
            "NEWFALSE",
        ],
        _Segment.op_push,
    ),
    **dict.fromkeys(
        [
            "STRING",
            "BINSTRING",
            "SHORT_BINSTRING",
            "UNICODE",
            "BINUNICODE",
            "SHORT_BINUNICODE",
            "BINUNICODE8",
        ],
        _Segment.op_push_str,
    ),
    **dict.fromkeys(
        ["BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"], _Segment.op_push_bytes
    ),
    **dict.fromkeys(["PUT", "BINPUT", "LONG_BINPUT"], _Segment.op_put),
    **dict.fromkeys(["GET", "BINGET", "LONG_BINGET"], _Segment.op_get),
    **dict.fromkeys(["EMPTY_LIST", "EMPTY_SET"], _Segment.op_empty_container),
    **dict.fromkeys(["LIST", "FROZENSET"], _Segment.op_container_from_mark),
    **dict.fromkeys(["APPENDS", "ADDITEMS"], _Segment.op_extend),
    **dict.fromkeys(["EXT1", "EXT2", "EXT4"], _Segment.op_ext),
    "FRAME": _Segment.op_frame,
    "READONLY_BUFFER": _Segment.op_nothing,
    "MEMOIZE": _Segment.op_memoize,
    "MARK": _Segment.op_mark,
    "EMPTY_TUPLE": _Segment.op_empty_tuple,
    "TUPLE1": _Segment.op_tuple1,
    "TUPLE2": _Segment.op_tuple2,
    "TUPLE3": _Segment.op_tuple3,
    "TUPLE": _Segment.op_tuple,
    "APPEND": _Segment.op_append,
    "EMPTY_DICT": _Segment.op_empty_dict,
    "DICT": _Segment.op_dict,
    "SETITEM": _Segment.op_setitem,
    "SETITEMS": _Segment.op_setitems,
    "POP": _Segment.op_pop,
    "POP_MARK": _Segment.op_pop_mark,
    "DUP": _Segment.op_dup,
    "GLOBAL": _Segment.op_global,
    "STACK_GLOBAL": _Segment.op_stack_global,
    "INST": _Segment.op_inst,
    "OBJ": _Segment.op_obj,
    "REDUCE": _Segment.op_reduce,
    "NEWOBJ": _Segment.op_newobj,
    "NEWOBJ_EX": _Segment.op_newobj_ex,
    "BUILD": _Segment.op_build,
    "PERSID": _Segment.op_persid,
    "BINPERSID": _Segment.op_binpersid,
    "NEXT_BUFFER": _Segment.op_next_buffer,
    "PROTO": _Segment.op_proto,
    "STOP": _Segment.op_stop,
}
"""The handler of every opcode of protocols 0 to 5 (checked against pickletools in the tests)."""


def _as_bytes(value: Any) -> bytes | None:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if (
        isinstance(value, _Obj)
        and isinstance(value.callee, _Global)
        and value.callee.fullname == "_codecs.encode"
        and isinstance(value.args, tuple)
        and len(value.args) == 2
        and isinstance(value.args[0], str)
    ):
        try:
            return value.args[0].encode("latin-1")
        except UnicodeEncodeError:
            return None
    return None


def _dtype_info(value: Any) -> tuple[int, bool] | None:
    """(itemsize, has_object) of a pickled ``numpy.dtype``, read from its args and state."""
    if not (
        isinstance(value, _Obj)
        and isinstance(value.callee, _Global)
        and value.callee.fullname == "numpy.dtype"
        and isinstance(value.args, tuple)
        and value.args
        and isinstance(value.args[0], str)
    ):
        return None
    code = value.args[0]
    state = value.state if isinstance(value.state, tuple) else ()
    has_object = code.startswith("O") or (
        len(state) >= 8 and isinstance(state[7], int) and bool(state[7] & 1)
    )
    if len(state) >= 6 and isinstance(state[5], int) and state[5] > 0:
        return state[5], has_object
    info = dtype_code_info(code)
    if info is None:
        return None
    return info[0], has_object or info[1]


def _is_plain_value(value: Any) -> bool:
    """A value that is not callable: strings, numbers, None, and tuples of those."""
    if value is None or type(value) in {str, bytes, int, float, bool}:
        return True
    return type(value) is tuple and all(_is_plain_value(v) for v in value)


def _joblib_array_info(state: Any) -> tuple[int, bool, bool] | None:
    """(bytes that follow, whether they are a nested pickle, whether a padding byte leads)."""
    if not isinstance(state, _DictVal):
        return None
    shape = state.items.get("shape")
    dtype = _dtype_info(state.items.get("dtype"))
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        return None
    if dtype is None:
        return None
    count = 1
    for n in shape:
        count *= n
    itemsize, has_object = dtype
    aligned = state.items.get("numpy_array_alignment_bytes") is not None
    return count * itemsize, has_object, aligned


def _global_issues(uses: dict[str, GlobalUse], path: str) -> list[ScanIssue]:
    issues = []
    for use in uses.values():
        if use.severity is None:
            continue
        dangerous = use.severity.rank >= Severity.HIGH.rank
        called = (
            f", called by {', '.join(sorted(use.calls))}"
            if use.calls
            else " (imported, not called)"
        )
        issues.append(
            ScanIssue(
                rule="pickle.dangerous-global" if dangerous else "pickle.unlisted-global",
                severity=use.severity,
                path=path,
                message=f"imports {use.fullname}{called}: {use.reason}",
                offset=use.first_offset,
                details={"global": use.fullname, "calls": sorted(use.calls), "count": use.count},
            )
        )
    return issues


def _fold(scan: PickleScan, segment: _Segment, *, mode: str, completed: bool) -> None:
    """Add one pickle's findings.

    ``mode`` says whether a loader unpickles the segment: ``full`` (the first pickle, and the
    five of a legacy torch file), ``trailing`` (bytes after a complete pickle, which a reader
    that loads in a loop runs) or ``raw`` (tensor data after a legacy torch file's pickles,
    which no loader unpickles: only critical globals read by chance there are kept).
    """
    scan.opcodes += segment.opcodes
    scan.actions += segment.actions
    for nested in segment.nested:
        scan.merge(nested)
    if mode == "raw" or (mode == "trailing" and not completed):
        if mode == "raw":
            kept = {k: u for k, u in segment.uses.items() if u.severity and u.severity.rank >= 4}
        else:
            # a reader calling pickle.load again runs these bytes up to where they break
            kept = {k: u for k, u in segment.uses.items() if u.severity is not None}
            scan.issues.extend(segment.issues)
            if segment.actions:
                scan.complete = False
                scan.issues.append(
                    ScanIssue(
                        "pickle.malformed",
                        Severity.HIGH,
                        segment.path,
                        f"bytes after pickle #{scan.pickles} import or call something before "
                        f"they break at offset {segment.error_offset} ({segment.error}); a "
                        "reader that calls pickle.load again runs them",
                        segment.error_offset,
                    )
                )
        scan.issues.extend(_global_issues(kept, segment.path))
        _merge_uses(scan.globals, kept)
        return
    if completed:
        scan.pickles += 1
    scan.protocols.append(segment.protocol)
    scan.issues.extend(segment.issues)
    scan.issues.extend(_global_issues(segment.uses, segment.path))
    _merge_uses(scan.globals, segment.uses)
    if segment.joblib_arrays:
        scan.kind = "joblib"
        scan.notes.append(
            f"{segment.joblib_arrays} joblib array payload(s) stepped over as joblib.load reads "
            "them; the stream was also read as pickle.load reads it, without stepping over them"
        )
    if not completed or segment.error is not None:
        scan.complete = False
        where = segment.error_offset
        if scan.error is None:
            scan.error, scan.error_offset = segment.error, where
        if completed:
            message = (
                f"the opcode stream cannot be followed from offset {where} ({segment.error}); "
                "the rest was checked opcode by opcode"
            )
            severity = Severity.MEDIUM if segment.actions == 0 else Severity.HIGH
        else:
            message = (
                f"the pickle is malformed at offset {where} ({segment.error}); a loader runs "
                "everything before that point, and what follows was not analysed"
            )
            severity = Severity.HIGH
        scan.issues.append(
            ScanIssue("pickle.malformed", severity, segment.path, message, where, {})
        )


def _merge_uses(into: dict[str, GlobalUse], uses: dict[str, GlobalUse]) -> None:
    for key, use in uses.items():
        mine = into.get(key)
        if mine is None:
            into[key] = use
        else:
            mine.count += use.count
            mine.calls |= use.calls


def scan_pickle_stream(
    stream: BinaryIO,
    *,
    path: str,
    size: int | None = None,
    depth: int = 0,
    context: str = "pickle",
) -> PickleScan:
    """Scan every consecutive pickle in ``stream`` (from its current position).

    Parameters
    ----------
    stream
        A binary file opened for reading (seekable).
    path
        How issues name the stream (``file``, ``archive!member``).
    size
        Bytes available from the current position; reads are clamped to it.
    depth
        Nesting level (pickles inside pickles); scanning stops at 6.
    context
        How globals are judged: ``pickle``, or ``torchscript`` for a pickle inside a TorchScript
        archive (see :func:`~mlwarden.supplychain.scan.policy.classify_global`).

    Returns
    -------
    PickleScan
        The issues, the imported globals and the stream's layout. ``pickles`` is 0 and
        ``actions`` 0 when the bytes are not a pickle: unpickling them fails (at
        ``error_offset``) before anything is imported or called.
    """
    with _open_reader(stream, size) as reader:
        return _scan_segments(reader, path=path, size=size, depth=depth, context=context)


_IN_MEMORY = 256 << 20


@contextlib.contextmanager
def _open_reader(stream: BinaryIO, size: int | None) -> Iterator[_Reader | _Direct]:
    """The fastest safe way to read ``stream``: in memory, memory-mapped, or clamped reads."""
    if isinstance(stream, io.BytesIO):
        total = len(stream.getbuffer())
        yield _Direct(stream, total if size is None else min(total, stream.tell() + size))
        return
    raw = getattr(stream, "raw", None)
    if type(stream) is io.BufferedReader and isinstance(raw, io.FileIO) and size:
        start = stream.tell()
        with mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            mapped.seek(start)
            yield _Direct(mapped, min(len(mapped), start + size))
        return
    if size is not None and size <= _IN_MEMORY:
        data = stream.read(size)
        yield _Direct(io.BytesIO(data), len(data))
        return
    yield _Reader(stream, size)


def _scan_segments(
    reader: _Reader | _Direct,
    *,
    path: str,
    size: int | None,
    depth: int,
    context: str,
    joblib: bool = True,
) -> PickleScan:
    scan = PickleScan()
    origin = reader.tell()
    index = 0
    crossings: list[tuple[int, int]] = []
    while True:
        start = reader.tell()
        segment = _Segment(reader, path, depth, context=context, joblib=joblib)
        completed = segment.run()
        crossings += segment.frame_crossings
        if index == 0 or (scan.kind == "pytorch-legacy" and index < _TORCH_LEGACY_PICKLES):
            mode = "full"
        elif scan.kind == "pytorch-legacy":
            mode = "raw"
        else:
            mode = "trailing"
        _fold(scan, segment, mode=mode, completed=completed)
        if index == 0 and completed and segment.result == _TORCH_LEGACY_MAGIC:
            scan.kind = "pytorch-legacy"
        if index == 0 and not completed:
            scan.error, scan.error_offset = segment.error, segment.error_offset
        index += 1
        if not completed:
            if index > 1 and segment.actions == 0:
                left = "the" if size is None else str(size - (start - origin))
                scan.notes.append(
                    f"{left} bytes after pickle #{scan.pickles} are not a pickle (tensor data of "
                    "a legacy torch.save, or trailing data) and were not parsed"
                )
            break
        if mode == "raw" or not reader.peek_byte():
            break
    if isinstance(reader, _Direct):
        end = reader.tell()
        for position, frame_end in crossings:
            _scan_file_reader_view(scan, reader, position, frame_end, path, depth, context)
        if joblib and scan.kind == "joblib":
            reader.stream.seek(origin)
            plain = _scan_segments(
                reader, path=path, size=size, depth=depth, context=context, joblib=False
            )
            _merge_alternative(scan, plain)
        reader.stream.seek(end)
    return scan


def _merge_alternative(scan: PickleScan, other: PickleScan) -> None:
    """Add what another loader's reading of the same bytes found, without repeating issues."""
    seen = {(i.rule, i.details.get("global"), i.offset) for i in scan.issues}
    for issue in other.issues:
        if issue.rule == "pickle.malformed":
            continue
        key = (issue.rule, issue.details.get("global"), issue.offset)
        if key not in seen:
            seen.add(key)
            scan.issues.append(issue)
    _merge_uses(scan.globals, {k: u for k, u in other.globals.items() if k not in scan.globals})
    scan.actions += other.actions


def _file_reader_resume(data: Any, position: int, frame_end: int) -> int | None:
    """Where CPython's unpickler reading a file continues after the opcode at ``position``.

    Its buffer holds exactly the frame; a read that does not fit in what is left of it drops
    that rest and reads from the file after the frame (``_Unpickler_ReadImpl``).
    """
    data.seek(position)
    op = data.read(1)
    if not op:
        return None
    opcode = _CODE2OP.get(op.decode("latin-1"))
    if opcode is None:
        return None
    cursor, buffer_end = position + 1, frame_end

    def read(n: int) -> bytes:
        nonlocal cursor, buffer_end
        if cursor + n <= buffer_end:
            start = cursor
            cursor += n
        else:
            start = buffer_end
            cursor = buffer_end = start + n
        data.seek(start)
        return bytes(data.read(n))

    def readline() -> None:
        nonlocal cursor, buffer_end
        data.seek(cursor)
        chunk = bytes(data.read(max(0, buffer_end - cursor)))
        newline = chunk.find(b"\n")
        if newline >= 0:
            cursor += newline + 1
            return
        data.seek(buffer_end)
        line = data.readline()
        cursor = buffer_end = buffer_end + len(line)

    size = _ARG_SIZE[opcode.name]
    if opcode.name in _TWO_LINES:
        readline()
        readline()
    elif size == pickletools.UP_TO_NEWLINE:
        readline()
    elif size >= 0:
        read(size)
    else:
        width = {
            pickletools.TAKEN_FROM_ARGUMENT1: 1,
            pickletools.TAKEN_FROM_ARGUMENT4: 4,
            pickletools.TAKEN_FROM_ARGUMENT4U: 4,
            pickletools.TAKEN_FROM_ARGUMENT8U: 8,
        }[size]
        length = int.from_bytes(read(width), "little", signed=width == 4 and size == -3)
        read(max(0, length))
    return cursor


def _scan_file_reader_view(
    scan: PickleScan,
    reader: _Direct,
    position: int,
    frame_end: int,
    path: str,
    depth: int,
    context: str,
) -> None:
    """Scan the opcodes CPython's file unpickler reads after a frame-crossing argument."""
    resume = _file_reader_resume(reader.stream, position, frame_end)
    if resume is None or resume >= reader.end:
        return
    reader.stream.seek(resume)
    segment = _Segment(reader, f"{path}@file-view", depth, context=context)
    segment.run()
    kept = {k: u for k, u in segment.uses.items() if u.severity is not None}
    scan.issues.extend(i for i in segment.issues if i.rule != "pickle.frame-crossing")
    scan.issues.extend(_global_issues(kept, segment.path))
    _merge_uses(scan.globals, kept)
    scan.actions += segment.actions
    scan.notes.append(
        f"an argument at offset {position} crosses its frame's end; the opcodes CPython's file "
        f"unpickler reads from offset {resume} were scanned as well"
    )


def scan_pickle_bytes(
    data: bytes, *, path: str, depth: int = 0, context: str = "pickle"
) -> PickleScan:
    """:func:`scan_pickle_stream` over bytes in memory."""
    return scan_pickle_stream(
        io.BytesIO(data), path=path, size=len(data), depth=depth, context=context
    )
