"""A pickle reader that rebuilds numpy arrays and plain containers only, never runs code.

It is installed as ``detectron2/utils/safe_pickle.py`` by
``third_party/detectron2_py/build_wheel.py`` and reads the ``.pkl`` files of
``DetectionCheckpointer`` (Detectron / Caffe2 model-zoo weights) and of
``load_proposals_into_dataset`` (precomputed proposals). ``pickle.load`` would call any callable
a file names (``os.system``, ``open``, ...); here a global outside the allow-list raises
``pickle.UnpicklingError`` naming it, before anything is called.
"""
import _compat_pickle
import io
import pickle

__all__ = ["load", "loads", "SafeUnpickler"]

ALLOWED = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays in pickle protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
        ("builtins", "dict"),
        ("builtins", "list"),
        ("builtins", "tuple"),
        ("builtins", "set"),
    }
)


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode`` as pickle protocol <= 2 uses it for ``bytes``: latin-1 only."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(
            f"refusing '_codecs.encode' with encoding {encoding!r}: only latin-1 is allowed"
        )
    if not isinstance(text, str):
        raise pickle.UnpicklingError("refusing '_codecs.encode' of a non-string")
    return text.encode("latin1")


def _python3_name(module, name):
    """``module.name`` as Python 3 spells it (protocol <= 2 files say ``__builtin__.set``)."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class SafeUnpickler(pickle.Unpickler):
    """An unpickler whose globals are limited to ``ALLOWED`` (and a latin-1 ``_codecs.encode``)."""

    def find_class(self, module, name):
        module, name = _python3_name(module, name)
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"refusing to load '{module}.{name}': only numpy arrays and plain containers are "
            "allowed in this pickle file"
        )


def load(file, encoding="ASCII"):
    """Like ``pickle.load(file, encoding=encoding)``, limited to arrays and containers."""
    return SafeUnpickler(file, encoding=encoding).load()


def loads(data, encoding="ASCII"):
    """Like ``pickle.loads(data, encoding=encoding)``, limited to arrays and containers."""
    return load(io.BytesIO(data), encoding=encoding)
