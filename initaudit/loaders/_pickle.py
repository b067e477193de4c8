"""A restricted unpickler for torch checkpoints: data in, inert objects out, nothing executed.

This is a re-implementation of the pickle opcode loop (protocols 0-5), not a subclass of
``pickle.Unpickler``: the standard unpickler imports modules and calls whatever a GLOBAL names,
and overriding ``find_class`` still leaves ``__setstate__``/``__reduce__`` paths to audit. Here a
GLOBAL only ever resolves to a value from our own tables:

* allow-listed torch rebuild functions, storage classes, dtypes, ``collections.OrderedDict``,
  ``torch.Size``, ``_codecs.encode``, ``set`` and numpy's reconstruct helpers, each mapped to inert
  code of ours that builds plain descriptions (:class:`StorageRef`, :class:`TensorRef`, ...);
* any other name becomes a :class:`GlobalRef`. Instantiating one through NEWOBJ gives a
  :class:`Stub` that records the state BUILD hands it (this is how ``torch.save(model)`` stores
  ``nn.Module`` objects). *Calling* one (REDUCE/INST/OBJ) is recorded as
  :class:`~initaudit.model.UnsafeContent` and returns an inert :class:`Placeholder`. Names that are
  dangerous by themselves (``os.system``, ``builtins.eval``, ``subprocess.*``...) are recorded as
  unsafe as soon as they appear.

Sizes are capped (pickle bytes, stack, memo, mark depth) so a hostile pickle ends in a
:class:`~initaudit.model.LoadError`, never a hang, an OOM or a RecursionError.
"""

from __future__ import annotations

import codecs
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from ..model import LoadError, UnsafeContent, UnsafeLoadError


# --------------------------------------------------------------------------------------------
# Inert values produced by the unpickler
# --------------------------------------------------------------------------------------------
@dataclass(eq=False)
class GlobalRef:
    """A GLOBAL we did not resolve to code. ``kind``: torch-module, torchscript, unknown, dangerous."""

    module: str
    name: str
    kind: str

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"


@dataclass(eq=False)
class Stub:
    """An object rebuilt from a class reference without running its code.

    ``state`` is what BUILD/``__setstate__`` would have received (an ``nn.Module``'s ``__dict__``);
    ``items``/``list_items`` catch SETITEMS/APPENDS on dict or list subclasses.
    """

    qualname: str
    kind: str
    args: tuple[Any, ...] = ()
    state: dict[Any, Any] = field(default_factory=dict)
    items: dict[Any, Any] = field(default_factory=dict)
    list_items: list[Any] = field(default_factory=list)
    called: bool = False  # built through REDUCE (a call) rather than NEWOBJ


@dataclass(eq=False)
class Placeholder:
    """Stands for the result of a call we refused to make."""

    what: str


@dataclass(eq=False)
class StorageType:
    """``torch.FloatStorage`` & co.; dtype None means ``UntypedStorage`` (numel counts bytes)."""

    name: str
    dtype: str | None


@dataclass(eq=False)
class DType:
    """``torch.float32`` & co."""

    name: str


@dataclass(eq=False)
class StorageRef:
    """A persistent storage: where its bytes are, and how many elements of which dtype."""

    key: str
    dtype: str | None  # None: untyped bytes
    numel: int
    location: str
    type_name: str
    # legacy format: (view_key, offset, size) in elements of a root storage
    view: tuple[Any, ...] | None = None


@dataclass(eq=False)
class TensorRef:
    """A tensor as the rebuild functions describe it (sizes/strides/offset in elements)."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    is_param: bool = False


@dataclass(eq=False)
class InlineArray:
    """A tensor whose values sit inside the pickle (``_rebuild_device_tensor_from_numpy``)."""

    array: np.ndarray
    dtype: str


@dataclass(eq=False)
class UnsupportedTensor:
    """A tensor built by a torch rebuilder we do not emulate (quantized, sparse, nested...)."""

    reason: str


class PDict(dict[Any, Any]):
    """``collections.OrderedDict`` (or defaultdict); BUILD state lands in ``.state``."""

    state: Any = None


@dataclass(eq=False)
class _NpArrayStub:
    """numpy ``_reconstruct`` result before BUILD gives it shape, dtype and bytes."""

    array: np.ndarray | None = None
    # an object array's elements (only where the caller asked for them: ``object_arrays``)
    objects: list[Any] | None = None


def object_array_items(value: Any) -> list[Any] | None:
    """The elements of an object array read with ``object_arrays=True`` (else None)."""
    return value.objects if isinstance(value, _NpArrayStub) else None


@dataclass(eq=False)
class _NpDType:
    descr: str
    byteorder: str = "="

    def numpy(self) -> np.dtype:
        # narrowed to "<", ">" or "=" by the test itself
        order = cast(Literal["<", ">", "="], self.byteorder if self.byteorder in "<>" else "=")
        return np.dtype(self.descr).newbyteorder(order) if order != "=" else np.dtype(self.descr)


# --------------------------------------------------------------------------------------------
# Limits and results
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PickleLimits:
    max_bytes: int = 128 * 2**20
    max_stack: int = 5_000_000
    max_memo: int = 5_000_000
    max_marks: int = 100_000


@dataclass
class UnpickleContext:
    """What one unpickling run saw besides the value itself."""

    location: str
    unsafe: list[UnsafeContent] = field(default_factory=list)
    class_refs: list[str] = field(default_factory=list)  # classes instantiated as inert stubs
    # bytes/str values that decode to a pickle (raw, base64, hex): scanned after the outer one
    embedded: list[bytes] = field(default_factory=list)
    depth: int = 0
    # keep a numpy object array's elements (parsed as inert values like everything else) instead
    # of refusing it: Keras' NpzIOStore pickles each layer's variables as one such array
    object_arrays: bool = False

    def flag(self, what: str) -> None:
        item = UnsafeContent(what=what, location=self.location)
        if item not in self.unsafe:
            self.unsafe.append(item)

    def note_class(self, qualname: str) -> None:
        if qualname not in self.class_refs:
            self.class_refs.append(qualname)


class PickleError(LoadError):
    pass


# --------------------------------------------------------------------------------------------
# Name tables
# --------------------------------------------------------------------------------------------
# storage class name -> dtype name (None = untyped bytes)
STORAGE_TYPES: dict[str, str | None] = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "QInt8Storage": "qint8",
    "QUInt8Storage": "quint8",
    "QInt32Storage": "qint32",
    "QUInt4x2Storage": "quint4x2",
    "QUInt2x4Storage": "quint2x4",
    "UntypedStorage": None,
    "_UntypedStorage": None,
}
_STORAGE_MODULES = ("torch", "torch.cuda", "torch.storage")

# torch dtype attribute -> canonical dtype name
TORCH_DTYPES: dict[str, str] = {
    "float32": "float32",
    "float": "float32",
    "float64": "float64",
    "double": "float64",
    "float16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "long": "int64",
    "int32": "int32",
    "int": "int32",
    "int16": "int16",
    "short": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
    "complex64": "complex64",
    "cfloat": "complex64",
    "complex128": "complex128",
    "cdouble": "complex128",
    "complex32": "complex32",
    "chalf": "complex32",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
    "float8_e8m0fnu": "float8_e8m0fnu",
    "float4_e2m1fn_x2": "float4_e2m1fn_x2",
    "qint8": "qint8",
    "quint8": "quint8",
    "qint32": "qint32",
}

# Modules whose every name is dangerous to even reference (import side effects, code execution).
_DANGEROUS_MODULES = (
    "os",
    "posix",
    "nt",
    "subprocess",
    "sys",
    "runpy",
    "webbrowser",
    "socket",
    "shutil",
    "pty",
    "importlib",
    "ctypes",
    "pickle",
    "_pickle",
    "marshal",
    "code",
    "codeop",
    "multiprocessing",
    "threading",
    "_thread",
    "asyncio",
    "pdb",
    "bdb",
    "timeit",
    "requests",
    "urllib",
    "urllib2",
    "http",
    "httplib",
    "ftplib",
    "telnetlib",
    "smtplib",
    "tempfile",
    "signal",
    "dill",
    "joblib",
    "cloudpickle",
    "operator",
    "_operator",
    "commands",
    "popen2",
    "pexpect",
    "paramiko",
    "torch.hub",
    "torch.serialization",
    "torch.utils.cpp_extension",
    "torch.package",
    "torch.jit",
    "numpy.testing",
    "numpy.f2py",
    "numpy.distutils",
    "setuptools",
    "distutils",
    "pip",
    "zipimport",
    "ssl",
    "platform",
    "types",
    "inspect",
    "gc",
    "site",
    "sysconfig",
)
_DANGEROUS_BUILTINS = frozenset(
    {
        "eval",
        "exec",
        "execfile",
        "compile",
        "open",
        "getattr",
        "setattr",
        "delattr",
        "__import__",
        "globals",
        "locals",
        "vars",
        "input",
        "breakpoint",
        "file",
        "reload",
        "apply",
        "help",
        "exit",
        "quit",
        "memoryview",
        "type",
        "super",
        "classmethod",
        "staticmethod",
        "property",
    }
)
_DANGEROUS_NAMES = frozenset(
    {
        "functools.reduce",
        "torch.load",
        "torch.save",
        "numpy.load",
        "numpy.save",
        "torch.from_file",
        "numpy.fromfile",
        "numpy.memmap",
    }
)

# Classes that library code constructs from plain data and never calls back: REDUCE/NEWOBJ on
# them is part of the grammar *only with inert arguments* (strings, numbers, tuples of those).
_BENIGN_CONSTRUCTORS = frozenset(
    {
        "pathlib.Path",
        "pathlib.PosixPath",
        "pathlib.WindowsPath",
        "pathlib.PurePosixPath",
        "pathlib.PureWindowsPath",
        "datetime.datetime",
        "datetime.date",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
        "argparse.Namespace",
        "torch.device",
        "torch.layout",
        "torch.memory_format",
        "builtins.slice",
        "builtins.range",
        "builtins.bytearray",
        "builtins.bytes",
        "__builtin__.bytearray",
        "__builtin__.slice",
    }
)

# Tensor classes ``_rebuild_from_type_v2`` may turn a rebuilt tensor into: torch's own, whose
# ``__setstate__`` is torch's ``_set_obj_state`` (attribute assignment only).
_TENSOR_CLASSES = frozenset(
    {
        "torch.Tensor",
        "torch._tensor.Tensor",
        "torch.nn.parameter.Parameter",
        "torch.nn.parameter.Buffer",
        "torch.nn.parameter.UninitializedParameter",
        "torch.nn.parameter.UninitializedBuffer",
    }
)

# Class families whose instances ``torch.save`` writes as NEWOBJ/REDUCE + BUILD of plain state
# (modules, optimizers, scripted modules, numpy arrays). Their ``__setstate__`` is the library's
# own attribute assignment; they are rebuilt as inert :class:`Stub` objects.
_STUB_KINDS = frozenset({"torch-module", "torchscript", "numpy-ndarray", "benign", "tensor-class"})
# kinds NEWOBJ (``cls.__new__``) + BUILD may instantiate without a finding
_NEWOBJ_KINDS = _STUB_KINDS | {"main-class", "library-class"}
# The one trust decision beyond torch's own grammar (docs/security.md): ``torch.save(model)`` of a
# model built by the libraries whose untouched models are this linter's ground truth stores their
# nn.Module subclasses (and configs) as NEWOBJ/``copyreg._reconstructor`` + BUILD of plain state.
# Loading imports the installed library (the code the user already runs to build the model) and
# assigns attributes (nn.Module.__setstate__); *calling* any of these classes or functions from
# the pickle (REDUCE) is still a finding, and so is every class of any other package.
_KERAS_VARIABLE_CLASSES = frozenset({"keras.src.backend.Variable"})
_LIBRARY_CLASS_PACKAGES = (
    "torchvision",
    "timm",
    "transformers",
    "diffusers",
    "peft",
    "sentence_transformers",
    "torchaudio",
)
_TORCH_CLASS_MODULES = (
    "torch.nn.modules",
    "torch.nn.parameter",
    "torch.nn.utils.parametrize",
    "torch.nn.utils.parametrizations",
    "torch.nn.utils.spectral_norm",
    "torch.nn.utils.weight_norm",
    "torch.nn.utils.prune",
    # torch.distributed.checkpoint's .metadata: its own dataclasses
    "torch.distributed.checkpoint.metadata",
    "torch.distributed.checkpoint.filesystem",
    "torch.ao.nn",
    "torch.nn.quantized",
    "torch.nn.qat",
    "torch.nn.intrinsic",
    "torch.optim",
    "torch.utils.hooks",
)
# A class (CapWords or _Private) - never a dotted attribute path or a dunder
_CLASS_NAME = re.compile(r"^_?[A-Z][A-Za-z0-9_]*$")
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _is_dangerous(module: str, name: str) -> bool:
    if f"{module}.{name}" in _DANGEROUS_NAMES:
        return True
    if module in ("builtins", "__builtin__", "__builtins__"):
        return name in _DANGEROUS_BUILTINS
    return any(module == m or module.startswith(m + ".") for m in _DANGEROUS_MODULES)


class _Refused(Exception):
    """Raised by an allow-listed helper whose arguments are outside the grammar (a finding)."""


def _describe(value: Any) -> str:
    if isinstance(value, (GlobalRef, _Allowed)):
        return value.qualname
    if isinstance(value, StorageType):
        return value.name
    if isinstance(value, Stub):
        return f"an instance of {value.qualname}"
    if isinstance(value, Placeholder):
        return f"the result of {value.what}"
    return f"a {type(value).__name__}"


_INERT_ATOMS = (type(None), bool, int, float, complex, str, bytes, bytearray)


def _is_inert(value: Any, depth: int = 0) -> bool:
    """Plain data only: numbers, strings, containers of them, tensors and dtypes we built.

    No class or function reference, no placeholder of a refused call, no stub of a class.
    """
    if depth > 64:
        return False
    if isinstance(value, _INERT_ATOMS):
        return True
    if isinstance(
        value,
        (
            StorageRef,
            TensorRef,
            InlineArray,
            UnsupportedTensor,
            DType,
            np.ndarray,
            np.generic,
            _NpDType,
        ),
    ):
        return True
    if isinstance(value, _NpArrayStub):
        return value.array is not None
    if isinstance(value, dict):
        return all(_is_inert(k, depth + 1) and _is_inert(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return all(_is_inert(v, depth + 1) for v in value)
    return False


# --------------------------------------------------------------------------------------------
# Allow-listed callables (inert re-implementations)
# --------------------------------------------------------------------------------------------
def _as_int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if isinstance(value, (tuple, list)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        return tuple(int(v) for v in value)
    raise PickleError(f"malformed tensor record in pickle ({what} is not a tuple of ints)")


def _tensor_from(storage: Any, offset: Any, size: Any, stride: Any, dtype: str | None) -> Any:
    if isinstance(storage, UnsupportedTensor):
        return storage
    if not isinstance(storage, StorageRef):
        raise PickleError("malformed tensor record in pickle (storage is not a persistent storage)")
    if not isinstance(offset, int):
        raise PickleError("malformed tensor record in pickle (offset is not an int)")
    dt = dtype or storage.dtype
    if dt is None:
        raise PickleError("malformed tensor record in pickle (untyped storage without dtype)")
    return TensorRef(
        storage, int(offset), _as_int_tuple(size, "size"), _as_int_tuple(stride, "stride"), dt
    )


def _rebuild_tensor(
    storage: Any = None, offset: Any = 0, size: Any = (), stride: Any = (), *_: Any
) -> Any:
    return _tensor_from(storage, offset, size, stride, None)


def _rebuild_tensor_v3(
    storage: Any = None,
    offset: Any = 0,
    size: Any = (),
    stride: Any = (),
    _rg: Any = False,
    _hooks: Any = None,
    dtype: Any = None,
    *_: Any,
) -> Any:
    if not isinstance(dtype, DType):
        raise PickleError("malformed tensor record in pickle (_rebuild_tensor_v3 without a dtype)")
    return _tensor_from(storage, offset, size, stride, dtype.name)


def _rebuild_parameter(data: Any = None, *_: Any) -> Any:
    if isinstance(data, TensorRef):
        data.is_param = True
    return data


def _rebuild_from_type_v2(
    func: Any = None, new_type: Any = None, args: Any = (), _state: Any = None
) -> Any:
    # torch calls ``func(*args)`` and then ``new_type``'s ``__setstate__``: both must be proven
    # inert (a rebuild function of ours, a tensor class of torch) or the call is refused
    if not (isinstance(func, _Allowed) and func.qualname in _TENSOR_REBUILDERS):
        raise _Refused(
            f"{_describe(func)} called by torch._tensor._rebuild_from_type "
            "(torch.load calls it with the pickled arguments)"
        )
    if not (isinstance(new_type, GlobalRef) and new_type.qualname in _TENSOR_CLASSES):
        raise _Refused(f"tensor subclass {_describe(new_type)} (torch.load runs its __setstate__)")
    if not isinstance(args, tuple):
        raise PickleError("malformed _rebuild_from_type arguments in pickle")
    return func.fn(*args)


def _rebuild_from_numpy(data: Any = None, dtype: Any = None, *_: Any) -> Any:
    data = unwrap(data)
    if isinstance(data, np.ndarray) and isinstance(dtype, DType):
        return InlineArray(data, dtype.name)
    return UnsupportedTensor("device tensor from numpy without an array")


def _copyreg_reconstructor(cls: Any = None, base: Any = None, state: Any = None, *_: Any) -> Any:
    # protocol 0/1 object rebuild: ``base.__new__(cls, state)`` and, unless base is object,
    # ``base.__init__(obj, state)``: base must be an inert builtin type, cls a class we stub
    if not (isinstance(base, _Allowed) and base.qualname in _INERT_BASES):
        raise _Refused(
            f"copyreg._reconstructor with base {_describe(base)} "
            "(the unpickler calls base.__init__)"
        )
    if isinstance(cls, GlobalRef) and cls.kind in _NEWOBJ_KINDS:
        return Stub(cls.qualname, cls.kind)
    raise _Refused(f"copyreg._reconstructor of {_describe(cls)}")


def _defaultdict(factory: Any = None, *_: Any) -> PDict:
    # the default factory is called later, on a missing key: only an inert type may be one
    if factory is not None and not (
        isinstance(factory, _Allowed)
        and factory.qualname.split(".")[0] in ("builtins", "__builtin__")
    ):
        raise _Refused(f"collections.defaultdict with factory {_describe(factory)}")
    return PDict()


def unwrap(value: Any) -> Any:
    """A numpy ``_reconstruct`` stub stands for its array once BUILD has filled it."""
    if isinstance(value, _NpArrayStub):
        return value.array
    return value


def _ordered_dict(*args: Any) -> PDict:
    out = PDict()
    if args:
        src = args[0]
        if isinstance(src, dict):
            out.update(src)
        elif isinstance(src, (list, tuple)):
            for pair in src:
                if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
                    raise PickleError("malformed OrderedDict arguments in pickle")
                out[pair[0]] = pair[1]
    return out


def _codecs_encode(text: Any = "", encoding: Any = "utf-8", *_: Any) -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1", "utf-8", "utf8", "ascii"):
        raise PickleError("malformed _codecs.encode call in pickle")
    return cast(bytes, codecs.encode(text, encoding))  # text codecs only (checked above)


def _make_set(items: Any = ()) -> Any:
    if not isinstance(items, (list, tuple, set, frozenset)):
        raise PickleError("malformed set() call in pickle")
    try:
        return set(items)
    except TypeError:
        return list(items)  # unhashable stubs: keep them, order is irrelevant to us


def _torch_size(items: Any = ()) -> tuple[int, ...]:
    return tuple(_as_int_tuple(items, "torch.Size"))


def _np_reconstruct(*_: Any) -> _NpArrayStub:
    return _NpArrayStub()


_SAFE_NP_DESCR = re.compile(r"^[<>=|]?([biuf]\d{1,2}|c(8|16|32)|\?|b1|[SUV]\d{0,9})$")


def _np_dtype(descr: Any = None, *_: Any) -> _NpDType:
    if descr in ("O", "O4", "O8", "|O"):
        # an object array: refused when its BUILD comes, after its elements were parsed (and
        # scanned: their globals are what np.load(allow_pickle=True) would run)
        return _NpDType("O")
    if not isinstance(descr, str) or not _SAFE_NP_DESCR.match(descr):
        raise PickleError(f"numpy dtype {descr!r} in pickle is not supported (object/structured)")
    return _NpDType(descr)


def _np_scalar(dtype: Any = None, data: Any = None, *_: Any) -> Any:
    if not isinstance(dtype, _NpDType) or not isinstance(data, (bytes, bytearray)):
        raise PickleError("numpy object scalar in pickle is not supported")
    dt = dtype.numpy()
    if len(data) != dt.itemsize:
        raise PickleError("malformed numpy scalar in pickle")
    return np.frombuffer(bytes(data), dtype=dt)[0]


def _inert_builtin(kind: type) -> Callable[..., Any]:
    def build(*args: Any) -> Any:
        if len(args) > 1:
            raise PickleError(f"malformed {kind.__name__}() call in pickle")
        if not args:
            return kind()
        arg = args[0]
        if kind in (list, tuple, frozenset, dict) and not isinstance(
            arg, (list, tuple, dict, set, frozenset)
        ):
            raise PickleError(f"malformed {kind.__name__}() call in pickle")
        if kind in (int, float, complex, bool, str) and not isinstance(
            arg, (int, float, str, bool, bytes)
        ):
            raise PickleError(f"malformed {kind.__name__}() call in pickle")
        try:
            return kind(arg)
        except (TypeError, ValueError) as exc:
            raise PickleError(f"malformed {kind.__name__}() call in pickle ({exc})") from None

    return build


def _identity(value: Any = None, *_: Any) -> Any:
    return value


def _jax_reconstruct_array(
    fun: Any = None, args: Any = None, arr_state: Any = None, aval_state: Any = None, *_: Any
) -> Any:
    """``jax._src.array._reconstruct_array(fun, args, arr_state, aval_state)`` (how a jax Array
    pickles: ``fun(*args).__setstate__(arr_state)`` then a device put): the numpy array, when
    ``fun`` is numpy's own ``_reconstruct`` and everything else is plain data."""
    if not (isinstance(fun, _Allowed) and fun.fn is _np_reconstruct):
        raise _Refused(f"jax array rebuilt by {_describe(fun)}")
    if not isinstance(args, tuple) or not all(
        _is_inert(a) or (isinstance(a, GlobalRef) and a.kind == "numpy-ndarray") for a in args
    ):
        raise _Refused("jax array with an argument outside the numpy grammar")
    if not _is_inert(aval_state):
        raise _Refused(f"jax array with aval state {_describe(aval_state)}")
    return _np_array_from_state(arr_state)


@dataclass(eq=False)
class _Allowed:
    qualname: str
    fn: Callable[..., Any]


_ALLOWED_FUNCS: dict[str, Callable[..., Any]] = {
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch._utils._rebuild_device_tensor_from_numpy": _rebuild_from_numpy,
    "collections.OrderedDict": _ordered_dict,
    "copyreg._reconstructor": _copyreg_reconstructor,
    "copy_reg._reconstructor": _copyreg_reconstructor,
    "torch.Size": _torch_size,
    "_codecs.encode": _codecs_encode,
    "__builtin__.set": _make_set,
    "builtins.set": _make_set,
    "__builtin__.frozenset": _inert_builtin(frozenset),
    "builtins.frozenset": _inert_builtin(frozenset),
    "builtins.list": _inert_builtin(list),
    "__builtin__.list": _inert_builtin(list),
    "builtins.tuple": _inert_builtin(tuple),
    "__builtin__.tuple": _inert_builtin(tuple),
    "builtins.dict": _inert_builtin(dict),
    "__builtin__.dict": _inert_builtin(dict),
    "builtins.int": _inert_builtin(int),
    "builtins.float": _inert_builtin(float),
    "builtins.complex": _inert_builtin(complex),
    "builtins.bool": _inert_builtin(bool),
    "builtins.str": _inert_builtin(str),
    # TorchScript data.pkl: typed-list wrappers that return their argument
    "torch.jit._pickle.build_intlist": _identity,
    "torch.jit._pickle.build_tensorlist": _identity,
    "torch.jit._pickle.build_doublelist": _identity,
    "torch.jit._pickle.build_boollist": _identity,
    "torch.jit._pickle.build_tensor_from_id": _identity,
    "torch.jit._pickle.restore_type_tag": _identity,
    "numpy.core.multiarray._reconstruct": _np_reconstruct,
    "numpy._core.multiarray._reconstruct": _np_reconstruct,
    "numpy.dtype": _np_dtype,
    "numpy.core.multiarray.scalar": _np_scalar,
    "numpy._core.multiarray.scalar": _np_scalar,
    # a jax Array as it pickles (Keras 3 NpzIOStore under the jax backend): a numpy array
    "jax._src.array._reconstruct_array": _jax_reconstruct_array,
}
_ALLOWED_FUNCS["torch._tensor._rebuild_from_type"] = _rebuild_from_type_v2
_ALLOWED_FUNCS["collections.defaultdict"] = _defaultdict
for _b in ("builtins", "__builtin__"):
    _ALLOWED_FUNCS[f"{_b}.object"] = _inert_builtin(object)

# functions a tensor record may name as the ``func`` of ``_rebuild_from_type[_v2]``
_TENSOR_REBUILDERS = frozenset(
    {
        "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_tensor_v2",
        "torch._utils._rebuild_tensor_v3",
        "torch._utils._rebuild_parameter",
        "torch._utils._rebuild_parameter_with_state",
        "torch._utils._rebuild_device_tensor_from_numpy",
    }
)
# base types ``copyreg._reconstructor`` may call ``__init__`` of (object: no call at all)
_INERT_BASES = frozenset(
    {
        f"{b}.{t}"
        for b in ("builtins", "__builtin__")
        for t in ("object", "dict", "list", "tuple", "set", "frozenset", "int", "float", "str")
    }
)
# the other rebuild functions of torch 2.x (torch/_utils.py): real torch code, whose tensors we
# do not emulate; inert only when every argument is plain data (never a class or a call result)
_OTHER_REBUILDERS = frozenset(
    {
        "torch._utils._rebuild_qtensor",
        "torch._utils._rebuild_sparse_tensor",
        "torch._utils._rebuild_nested_tensor",
        "torch._utils._rebuild_device_tensor_from_cpu_tensor",
        "torch._utils._rebuild_meta_tensor_no_storage",
        "torch._utils._rebuild_xla_tensor",
        "torch._utils._rebuild_mtia_tensor",
        "torch._utils._rebuild_sparse_csr_tensor",
    }
)
# enum-like torch attributes (qschemes, layouts) that appear as arguments of those records
_TORCH_ENUMS = frozenset(
    {
        "per_tensor_affine",
        "per_channel_affine",
        "per_tensor_symmetric",
        "per_channel_symmetric",
        "per_channel_affine_float_qparams",
        "strided",
        "sparse_coo",
        "sparse_csr",
        "sparse_csc",
        "sparse_bsr",
        "sparse_bsc",
        "_mkldnn",
        "jagged",
        "contiguous_format",
        "channels_last",
        "channels_last_3d",
        "preserve_format",
    }
)


def _other_rebuilder(qual: str) -> Callable[..., Any]:
    def build(*args: Any) -> Any:
        if not all(_is_inert(a) for a in args):
            bad = next(a for a in args if not _is_inert(a))
            raise _Refused(f"{qual} with argument {_describe(bad)} (outside the tensor grammar)")
        return UnsupportedTensor(f"tensor rebuilt by {qual.rsplit('.', 1)[-1]}")

    return build


def resolve_global(module: str, name: str, ctx: UnpickleContext) -> Any:
    """Map a GLOBAL to one of our inert values (never imports anything).

    Fail closed: a name outside the grammar is recorded as unsafe the moment it is referenced
    (torch.load imports its module, which alone can run code), whatever happens to it later.
    """
    qual = f"{module}.{name}"
    fn = _ALLOWED_FUNCS.get(qual)
    if fn is not None:
        return _Allowed(qual, fn)
    if qual in _OTHER_REBUILDERS:
        return _Allowed(qual, _other_rebuilder(qual))
    if module in _STORAGE_MODULES and name in STORAGE_TYPES:
        return StorageType(qual, STORAGE_TYPES[name])
    if module == "torch" and name in TORCH_DTYPES:
        return DType(TORCH_DTYPES[name])
    if module == "torch" and name in _TORCH_ENUMS:
        return DType(name)  # inert enum value
    if qual in ("numpy.ndarray", "numpy.core.multiarray.ndarray", "numpy._core.multiarray.ndarray"):
        return GlobalRef(module, name, "numpy-ndarray")
    if qual in _TENSOR_CLASSES:
        return GlobalRef(module, name, "tensor-class")
    if _is_dangerous(module, name):
        ctx.flag(f"pickle GLOBAL {qual}")
        return GlobalRef(module, name, "dangerous")
    plain = _MODULE_NAME.match(module) is not None and _CLASS_NAME.match(name) is not None
    if plain and any(module == m or module.startswith(m + ".") for m in _TORCH_CLASS_MODULES):
        return GlobalRef(module, name, "torch-module")
    if (
        (module == "__torch__" or module.startswith("__torch__."))
        and _MODULE_NAME.match(module)
        and _MODULE_NAME.match(name)
        and "__" not in name
    ):
        return GlobalRef(module, name, "torchscript")
    if qual in _BENIGN_CONSTRUCTORS:
        return GlobalRef(module, name, "benign")
    if (
        module in ("torch.nn.functional", "torch._C._nn", "torch")
        and _MODULE_NAME.match(name)
        and "." not in name
        and not name.startswith("_")
    ):
        # a module's activation stored by reference (nn.TransformerEncoderLayer.activation,
        # transformers' GELUActivation.act = torch._C._nn.gelu); dangerous torch names
        # (torch.load...) were refused above;
        # referencing it imports torch only, *calling* it from the pickle is still a finding
        return GlobalRef(module, name, "torch-function")
    if plain and module.split(".", 1)[0] in _LIBRARY_CLASS_PACKAGES:
        return GlobalRef(module, name, "library-class")
    if qual in _KERAS_VARIABLE_CLASSES:
        # Keras 3's NpzIOStore pickles the layer's Variable objects themselves (NEWOBJ + BUILD
        # of plain state whose _value is a numpy or jax array); calling it is still a finding
        return GlobalRef(module, name, "library-class")
    if module == "__main__" and _CLASS_NAME.match(name):
        # a class of the loading program itself: importing __main__ runs nothing new, and
        # NEWOBJ + BUILD of it is how pickle stores any user object; *calling* it is a finding
        return GlobalRef(module, name, "main-class")
    if qual == "functools.partial":
        return GlobalRef(module, name, "partial")
    why = ""
    if "." in name or not _MODULE_NAME.match(module):
        why = " (a dotted attribute path: the unpickler walks getattr from the module)"
    ctx.flag(f"pickle GLOBAL {qual}{why}")
    return GlobalRef(module, name, "unknown")


# --------------------------------------------------------------------------------------------
# The opcode loop
# --------------------------------------------------------------------------------------------
class _Mark:
    pass


_MARK = _Mark()
_U8 = struct.Struct("<Q")
_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U2 = struct.Struct("<H")
_F8 = struct.Struct(">d")


class RestrictedUnpickler:
    """Unpickle ``data[pos:]`` into inert objects; see the module docstring."""

    def __init__(
        self,
        data: bytes | memoryview,
        *,
        pos: int = 0,
        persistent_load: Callable[[Any], Any] | None = None,
        ctx: UnpickleContext | None = None,
        limits: PickleLimits | None = None,
    ) -> None:
        self.buf = memoryview(data)
        self.pos = pos
        self.start = pos
        self.persistent_load = persistent_load
        self.ctx = ctx or UnpickleContext(location="pickle")
        self.limits = limits or PickleLimits()
        self.end = min(len(self.buf), pos + self.limits.max_bytes)
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.frame_end: int | None = None  # end of the current FRAME (protocol 4+)

    # -- byte reading -----------------------------------------------------------------------
    def _take(self, n: int) -> memoryview:
        if n < 0:
            raise PickleError("malformed pickle (negative length)")
        p = self.pos
        if p + n > self.end:
            if p + n > len(self.buf):
                raise PickleError("truncated pickle (data ends inside an object)")
            raise PickleError(f"pickle is larger than the {self.limits.max_bytes >> 20} MiB limit")
        self.pos = p + n
        return self.buf[p : p + n]

    def _line(self) -> bytes:
        limit = min(self.end, self.pos + 1_000_000)
        chunk = bytes(self.buf[self.pos : limit])
        i = chunk.find(b"\n")
        if i < 0:
            raise PickleError("truncated pickle (unterminated text argument)")
        self.pos += i + 1
        return chunk[:i]

    # -- stack helpers ----------------------------------------------------------------------
    def _data(self, value: Any) -> Any:
        """A string or bytes constant; one that decodes to a pickle is kept for scanning."""
        if len(self.ctx.embedded) < _MAX_EMBEDDED and len(value) >= 16:
            blob = _embedded_pickle(value)
            if blob is not None:
                self.ctx.embedded.append(blob)
        return value

    def _push(self, value: Any) -> None:
        self.stack.append(value)
        if len(self.stack) > self.limits.max_stack:
            raise PickleError("pickle stack exceeds its limit (resource bomb?)")

    def _pop(self) -> Any:
        if not self.stack:
            raise PickleError("malformed pickle (stack underflow)")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise PickleError("malformed pickle (stack underflow)")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise PickleError("malformed pickle (no MARK)")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def _memo_put(self, key: int) -> None:
        if len(self.memo) >= self.limits.max_memo and key not in self.memo:
            raise PickleError("pickle memo exceeds its limit (resource bomb?)")
        self.memo[key] = self._top()

    def _memo_get(self, key: int) -> None:
        try:
            self._push(self.memo[key])
        except KeyError:
            raise PickleError("malformed pickle (memo key not found)") from None

    # -- semantic helpers -------------------------------------------------------------------
    def _call(self, func: Any, args: Any) -> Any:
        """REDUCE/INST/OBJ: only our own callables run; any other call is a finding."""
        if not isinstance(args, tuple):
            args = tuple(args) if isinstance(args, list) else (args,)
        if isinstance(func, _Allowed):
            try:
                return func.fn(*args)
            except _Refused as exc:
                self.ctx.flag(f"pickle call {exc}")
                return Placeholder(f"call of {func.qualname}")
            except LoadError:
                raise
            except (TypeError, ValueError, OverflowError) as exc:
                raise PickleError(
                    f"malformed arguments to {func.qualname} in pickle ({exc})"
                ) from None
        if isinstance(func, GlobalRef):
            if func.kind in _STUB_KINDS:
                bad = [a for a in args if not _is_inert(a)]
                if func.kind in ("benign", "tensor-class") and bad:
                    self.ctx.flag(
                        f"pickle call {func.qualname} with argument {_describe(bad[0])} "
                        "(outside the tensor grammar)"
                    )
                    return Placeholder(f"call of {func.qualname}")
                return Stub(func.qualname, func.kind, args=args, called=True)
            if func.kind == "partial":
                # functools.partial(f, ...) stores f; whoever calls the result calls f
                if args and isinstance(args[0], _Allowed) and all(_is_inert(a) for a in args[1:]):
                    return Placeholder("functools.partial of an allowed function")
                self.ctx.flag(
                    f"pickle call functools.partial of {_describe(args[0]) if args else 'nothing'}"
                )
                return Placeholder("call of functools.partial")
            # unknown and dangerous names were flagged when referenced; say it was called too
            self.ctx.flag(f"pickle GLOBAL {func.qualname}")
            return Placeholder(f"call of {func.qualname}")
        if isinstance(func, (Placeholder, Stub)):
            # calling the product of another call: no checkpoint does this; torch.load would
            self.ctx.flag(f"pickle call of {_describe(func)}")
            return Placeholder("call of an unresolved object")
        if isinstance(func, StorageType):
            return Placeholder(f"call of {func.name}")
        raise PickleError(f"malformed pickle (REDUCE on a {type(func).__name__})")

    def _new(self, cls: Any, args: Any) -> Any:
        """NEWOBJ: ``cls.__new__(cls, *args)`` -> an inert stub, never the class's code."""
        if isinstance(cls, GlobalRef):
            if cls.kind not in _NEWOBJ_KINDS:
                self.ctx.flag(f"pickle GLOBAL {cls.qualname}")
            return Stub(
                cls.qualname, cls.kind, args=tuple(args) if isinstance(args, (list, tuple)) else ()
            )
        if isinstance(cls, _Allowed) and cls.qualname == "collections.OrderedDict":
            return PDict()
        if isinstance(cls, (Placeholder, Stub)):
            self.ctx.flag(f"pickle instantiates {_describe(cls)}")
            return Placeholder("instance of an unresolved class")
        raise PickleError(f"malformed pickle (NEWOBJ on a {type(cls).__name__})")

    def _build(self, obj: Any, state: Any) -> None:
        """BUILD: record state on our own objects; never call ``__setstate__``."""
        if isinstance(obj, (GlobalRef, _Allowed, StorageType)):
            # BUILD on a class or function sets attributes on live code (monkey-patching)
            self.ctx.flag(f"pickle BUILD on {_describe(obj)} (sets attributes of code)")
            return
        if isinstance(obj, Stub) and obj.kind not in _NEWOBJ_KINDS:
            self.ctx.flag(f"pickle GLOBAL {obj.qualname}")
        if isinstance(obj, Stub):
            if isinstance(state, tuple) and len(state) == 2:
                for part in state:
                    if isinstance(part, dict):
                        obj.state.update(part)
            elif isinstance(state, dict):
                obj.state.update(state)
            else:
                obj.state["__state__"] = state
        elif isinstance(obj, PDict):
            obj.state = state
        elif isinstance(obj, _NpArrayStub):
            if self.ctx.object_arrays and _is_object_state(state):
                obj.objects = list(state[-1])
            else:
                obj.array = _np_array_from_state(state)
        elif isinstance(obj, _NpDType):
            if isinstance(state, tuple) and len(state) >= 2 and isinstance(state[1], str):
                if len(state) >= 4 and state[3] is not None:
                    raise PickleError("structured numpy dtype in pickle is not supported")
                obj.byteorder = state[1]
        # anything else (tensors, placeholders, plain containers): nothing to do

    def _setitems(self, target: Any, items: list[Any]) -> None:
        if len(items) % 2:
            raise PickleError("malformed pickle (odd SETITEMS)")
        if isinstance(target, Stub):
            target = target.items
        if not isinstance(target, dict):
            if isinstance(target, Placeholder):
                return
            raise PickleError("malformed pickle (SETITEM on a non-dict)")
        try:
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]
        except TypeError:
            raise PickleError("malformed pickle (unhashable dict key)") from None

    def _appends(self, target: Any, items: list[Any]) -> None:
        if isinstance(target, list):
            target.extend(items)
        elif isinstance(target, Stub):
            target.list_items.extend(items)
        elif isinstance(target, (set, frozenset)):
            raise PickleError("malformed pickle (APPEND on a set)")
        elif not isinstance(target, Placeholder):
            raise PickleError("malformed pickle (APPEND on a non-list)")

    def _global(self, module: str, name: str) -> Any:
        return resolve_global(module, name, self.ctx)

    def _persistent(self, pid: Any) -> Any:
        if self.persistent_load is None:
            raise PickleError("pickle uses persistent ids outside a torch archive")
        return self.persistent_load(pid)

    # -- main loop --------------------------------------------------------------------------
    def load(self) -> Any:
        """Run until STOP; returns the value. ``self.pos`` is then just past the STOP opcode."""
        try:
            try:
                return self._run()
            except RecursionError:
                raise PickleError("pickle nests too deeply") from None
            except MemoryError:
                raise PickleError("pickle needs too much memory (resource bomb?)") from None
        except LoadError as exc:
            # a finding made before the error stands: the framework ran it before failing
            if self.ctx.unsafe:
                raise UnsafeLoadError(str(exc), self.ctx.unsafe) from None
            raise

    def _run(self) -> Any:  # noqa: C901 - one branch per opcode is the clearest form
        take, push, pop = self._take, self._push, self._pop
        self.frame_end = None
        while True:
            frame_end: int | None = self.frame_end
            if frame_end is not None and self.pos >= frame_end:
                self.frame_end = None
                if self.pos > frame_end:
                    # writers end frames on opcode boundaries; an opcode that straddles one is
                    # read differently by different unpicklers (the C one reads on, the Python
                    # one refuses): what runs is not what a scanner sees (fickling's bypasses)
                    self.ctx.flag("pickle opcode straddles a FRAME boundary (readers disagree)")
            op = take(1)[0]
            if op == 0x80:  # PROTO
                proto = take(1)[0]
                if proto > 5:
                    raise PickleError(f"unsupported pickle protocol {proto}")
            elif op == 0x95:  # FRAME: data follows inline; its boundary is checked above
                size = int.from_bytes(take(8), "little")
                if self.frame_end is not None:
                    self.ctx.flag("pickle FRAME starts inside another frame (readers disagree)")
                self.frame_end = self.pos + size
            elif op == 0x2E:  # STOP
                return pop()
            elif op == 0x28:  # MARK
                if len(self.metastack) >= self.limits.max_marks:
                    raise PickleError("pickle nests too deeply (MARK limit)")
                self.metastack.append(self.stack)
                self.stack = []
            elif op == 0x30:  # POP
                if self.stack:
                    pop()
                else:
                    self._pop_mark()
            elif op == 0x31:  # POP_MARK
                self._pop_mark()
            elif op == 0x32:  # DUP
                push(self._top())
            # -- scalars ------------------------------------------------------------------
            elif op == 0x4E:
                push(None)
            elif op == 0x88:
                push(True)
            elif op == 0x89:
                push(False)
            elif op == 0x4B:  # BININT1
                push(take(1)[0])
            elif op == 0x4D:  # BININT2
                push(_U2.unpack(take(2))[0])
            elif op == 0x4A:  # BININT
                push(_I4.unpack(take(4))[0])
            elif op == 0x8A:  # LONG1
                n = take(1)[0]
                push(int.from_bytes(take(n), "little", signed=True))
            elif op == 0x8B:  # LONG4
                n = _I4.unpack(take(4))[0]
                if n > 65536:
                    raise PickleError("pickle integer is absurdly long")
                push(int.from_bytes(take(n), "little", signed=True))
            elif op == 0x49:  # INT (text); "00"/"01" are False/True in protocol 0
                line = self._line()
                if line == b"00":
                    push(False)
                elif line == b"01":
                    push(True)
                else:
                    push(self._int_text(line))
            elif op == 0x4C:  # LONG (text)
                push(self._int_text(self._line().rstrip(b"L")))
            elif op == 0x46:  # FLOAT (text)
                try:
                    push(float(self._line()))
                except ValueError:
                    raise PickleError("malformed pickle float") from None
            elif op == 0x47:  # BINFLOAT
                push(_F8.unpack(take(8))[0])
            # -- strings and bytes --------------------------------------------------------
            elif op == 0x58:  # BINUNICODE
                push(self._data(self._text(take(_U4.unpack(take(4))[0]))))
            elif op == 0x8C:  # SHORT_BINUNICODE
                push(self._data(self._text(take(take(1)[0]))))
            elif op == 0x8D:  # BINUNICODE8
                push(self._text(take(_U8.unpack(take(8))[0])))
            elif op == 0x56:  # UNICODE (raw-unicode-escape)
                push(self._line().decode("raw-unicode-escape", errors="replace"))
            elif op == 0x54:  # BINSTRING (python 2 str)
                push(self._py2str(take(_I4.unpack(take(4))[0])))
            elif op == 0x55:  # SHORT_BINSTRING
                push(self._py2str(take(take(1)[0])))
            elif op == 0x53:  # STRING (repr-quoted)
                push(self._string_nl(self._line()))
            elif op == 0x42:  # BINBYTES
                push(self._data(bytes(take(_U4.unpack(take(4))[0]))))
            elif op == 0x43:  # SHORT_BINBYTES
                push(self._data(bytes(take(take(1)[0]))))
            elif op == 0x8E:  # BINBYTES8
                push(self._data(bytes(take(_U8.unpack(take(8))[0]))))
            elif op == 0x96:  # BYTEARRAY8
                push(bytearray(take(_U8.unpack(take(8))[0])))
            elif op in (0x97, 0x98):  # NEXT_BUFFER / READONLY_BUFFER
                raise PickleError("pickle uses out-of-band buffers (not a checkpoint)")
            # -- containers ---------------------------------------------------------------
            elif op == 0x5D:
                push([])
            elif op == 0x7D:
                push({})
            elif op == 0x29:
                push(())
            elif op == 0x8F:
                push(set())
            elif op == 0x85:
                push((pop(),))
            elif op == 0x86:
                b = pop()
                push((pop(), b))
            elif op == 0x87:
                c = pop()
                b = pop()
                push((pop(), b, c))
            elif op == 0x74:  # TUPLE
                push(tuple(self._pop_mark()))
            elif op == 0x6C:  # LIST
                push(list(self._pop_mark()))
            elif op == 0x64:  # DICT
                items = self._pop_mark()
                d: dict[Any, Any] = {}
                self._setitems(d, items)
                push(d)
            elif op == 0x91:  # FROZENSET
                items = self._pop_mark()
                push(_make_set(items) if items else frozenset())
            elif op == 0x61:  # APPEND
                value = pop()
                self._appends(self._top(), [value])
            elif op == 0x65:  # APPENDS
                items = self._pop_mark()
                self._appends(self._top(), items)
            elif op == 0x73:  # SETITEM
                value = pop()
                key = pop()
                self._setitems(self._top(), [key, value])
            elif op == 0x75:  # SETITEMS
                items = self._pop_mark()
                self._setitems(self._top(), items)
            elif op == 0x90:  # ADDITEMS
                items = self._pop_mark()
                target = self._top()
                if isinstance(target, set):
                    try:
                        target.update(items)
                    except TypeError:
                        raise PickleError("malformed pickle (unhashable set item)") from None
                elif not isinstance(target, (Placeholder, list)):
                    raise PickleError("malformed pickle (ADDITEMS on a non-set)")
            # -- memo ---------------------------------------------------------------------
            elif op == 0x71:  # BINPUT
                self._memo_put(take(1)[0])
            elif op == 0x72:  # LONG_BINPUT
                self._memo_put(_U4.unpack(take(4))[0])
            elif op == 0x70:  # PUT
                self._memo_put(self._int_text(self._line()))
            elif op == 0x94:  # MEMOIZE
                self._memo_put(len(self.memo))
            elif op == 0x68:  # BINGET
                self._memo_get(take(1)[0])
            elif op == 0x6A:  # LONG_BINGET
                self._memo_get(_U4.unpack(take(4))[0])
            elif op == 0x67:  # GET
                self._memo_get(self._int_text(self._line()))
            # -- code references: resolved by our tables only ------------------------------
            elif op == 0x63:  # GLOBAL
                module = self._line().decode("utf-8", errors="replace")
                name = self._line().decode("utf-8", errors="replace")
                push(self._global(module, name))
            elif op == 0x93:  # STACK_GLOBAL
                name = pop()
                module = pop()
                if not isinstance(module, str) or not isinstance(name, str):
                    raise PickleError("malformed pickle (STACK_GLOBAL needs two strings)")
                push(self._global(module, name))
            elif op in (0x82, 0x83, 0x84):  # EXT1/2/4
                self.ctx.flag(
                    "pickle EXT opcode (resolves to whatever copyreg registered at run time)"
                )
                raise PickleError("pickle uses the copyreg extension registry (not a checkpoint)")
            elif op == 0x52:  # REDUCE
                args = pop()
                func = pop()
                push(self._call(func, args))
            elif op == 0x81:  # NEWOBJ
                args = pop()
                cls = pop()
                push(self._new(cls, args))
            elif op == 0x92:  # NEWOBJ_EX
                pop()  # kwargs
                args = pop()
                cls = pop()
                push(self._new(cls, args))
            elif op == 0x62:  # BUILD
                state = pop()
                self._build(self._top(), state)
            elif op == 0x69:  # INST: a class call with the marked arguments
                module = self._line().decode("utf-8", errors="replace")
                name = self._line().decode("utf-8", errors="replace")
                args = self._pop_mark()
                push(self._call(self._global(module, name), tuple(args)))
            elif op == 0x6F:  # OBJ
                items = self._pop_mark()
                if not items:
                    raise PickleError("malformed pickle (empty OBJ)")
                push(self._call(items[0], tuple(items[1:])))
            elif op == 0x51:  # BINPERSID
                push(self._persistent(pop()))
            elif op == 0x50:  # PERSID
                push(self._persistent(self._line().decode("ascii", errors="replace")))
            else:
                raise PickleError(
                    f"malformed pickle (unknown opcode 0x{op:02x} at byte {self.pos - 1})"
                )

    # -- decoding helpers -------------------------------------------------------------------
    @staticmethod
    def _text(raw: memoryview) -> str:
        try:
            return bytes(raw).decode("utf-8", errors="surrogatepass")
        except UnicodeDecodeError:
            raise PickleError("malformed pickle (a text argument is not valid UTF-8)") from None

    @staticmethod
    def _py2str(raw: memoryview) -> str:
        data = bytes(raw)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    @staticmethod
    def _int_text(line: bytes) -> int:
        try:
            return int(line)
        except ValueError:
            raise PickleError("malformed pickle integer") from None

    @staticmethod
    def _string_nl(line: bytes) -> str:
        if len(line) >= 2 and line[:1] == line[-1:] and line[:1] in (b"'", b'"'):
            return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
        raise PickleError("malformed pickle STRING")


def _is_object_state(state: Any) -> bool:
    """ndarray.__setstate__ of a dtype-O array: (version, shape, dtype O, fortran, [items])."""
    return (
        isinstance(state, tuple)
        and len(state) in (4, 5)
        and isinstance(state[-3], _NpDType)
        and state[-3].descr == "O"
        and isinstance(state[-1], list)
    )


def _np_array_from_state(state: Any) -> np.ndarray:
    """numpy ndarray.__setstate__((version, shape, dtype, is_fortran, rawdata)) without dtype O."""
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise PickleError("malformed numpy array state in pickle")
    shape, dtype, fortran, raw = state[-4:]
    if not isinstance(dtype, _NpDType):
        raise PickleError("numpy array in pickle has an unsupported dtype")
    if dtype.descr == "O":
        raise PickleError("numpy object array (dtype O) in pickle is not supported")
    if not isinstance(raw, (bytes, bytearray)):
        raise PickleError("numpy object arrays in pickles are not supported")
    dims = _as_int_tuple(shape, "numpy shape")
    if any(d < 0 for d in dims):
        raise PickleError("numpy array in pickle has a negative dimension")
    dt = dtype.numpy()
    if math.prod(dims) * dt.itemsize != len(raw):
        raise PickleError("numpy array in pickle: data size does not match its shape")
    arr = np.frombuffer(bytes(raw), dtype=dt)
    return arr.reshape(dims, order="F" if fortran else "C")


_B64 = re.compile(r"^[A-Za-z0-9+/=_-]{16,}$")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}){8,}$")
_MAX_EMBEDDED = 64


def _embedded_pickle(value: Any) -> bytes | None:
    """A pickle hidden in a value: raw bytes, or base64/hex text that decodes to one."""
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
    elif isinstance(value, str) and len(value) >= 16 and (_HEX.match(value) or _B64.match(value)):
        import base64
        import binascii

        try:
            raw = (
                bytes.fromhex(value)
                if _HEX.match(value)
                else base64.b64decode(
                    value + "=" * (-len(value) % 4),
                    altchars=b"-_" if ("-" in value or "_" in value) else None,
                )
            )
        except (ValueError, binascii.Error):
            return None
    else:
        return None
    if len(raw) >= 4 and raw[0] == 0x80 and raw[1] <= 5 and b"." in raw[-2:]:
        return raw
    return None


def _scan_embedded(ctx: UnpickleContext) -> None:
    """Embedded pickles are what an application loading this one may ``pickle.loads`` next."""
    if ctx.depth >= 3:
        return
    for blob in ctx.embedded[:_MAX_EMBEDDED]:
        sub = UnpickleContext(location=ctx.location, depth=ctx.depth + 1)
        try:
            RestrictedUnpickler(
                blob, ctx=sub, persistent_load=lambda pid: Placeholder("pid")
            ).load()
        except LoadError:
            pass
        _scan_embedded(sub)
        for item in sub.unsafe:
            ctx.flag(f"embedded pickle: {item.what}")
    ctx.embedded.clear()


def unpickle(
    data: bytes | memoryview,
    *,
    location: str,
    pos: int = 0,
    persistent_load: Callable[[Any], Any] | None = None,
    ctx: UnpickleContext | None = None,
    limits: PickleLimits | None = None,
) -> tuple[Any, int, UnpickleContext]:
    """Restricted-unpickle one pickle; returns (value, end position, context)."""
    ctx = ctx or UnpickleContext(location=location)
    up = RestrictedUnpickler(data, pos=pos, persistent_load=persistent_load, ctx=ctx, limits=limits)
    try:
        value = up.load()
    finally:
        if ctx.embedded:
            _scan_embedded(ctx)
    return _finish(value), up.pos, ctx


def _finish(value: Any) -> Any:
    # numpy array stubs whose BUILD never came are unusable; replace at the top level only
    if isinstance(value, _NpArrayStub):
        if value.objects is not None:
            return value  # an object array the caller asked for (object_array_items)
        return value.array if value.array is not None else Placeholder("numpy array without data")
    return value


def parse_storage_pid(pid: Any) -> StorageRef:
    """``('storage', storage_type, key, location, numel[, view_metadata])`` -> StorageRef."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
        raise PickleError("malformed persistent id in pickle (not a torch storage)")
    stype, key, location, numel = pid[1:5]
    if not isinstance(stype, StorageType):
        raise PickleError("persistent id names an unknown storage class")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise PickleError("persistent id has an invalid element count")
    view = pid[5] if len(pid) == 6 else None
    return StorageRef(str(key), stype.dtype, int(numel), str(location), stype.name, view)
