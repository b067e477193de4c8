"""AOTInductor packages (``torch._inductor.aoti_compile_and_package``): a ``.pt2`` zip whose
``data/aotinductor/`` folder holds a compiled shared library (``*.so``), its C++ source and the
weights the library was compiled against.

``torch._inductor.aoti_load_package`` dlopens that library: loading the file runs native code
the file ships. Nothing here is executed; every compiled or source member is reported as unsafe
content (fail closed), every pickle member is scanned like any torch archive's, and the weights,
whose layout is private to the compiled code, are listed as not analysed — the report says to
audit the checkpoint the package was compiled from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..model import LoadedModel, SkipReason, StoredTensor, UnsafeContent
from ._scan import scan_zip
from ._zip import SafeZip

# members whose presence means "loading runs code from this file"
_NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".cubin", ".o")
_SOURCE_SUFFIXES = (".cpp", ".cu", ".h", ".py")


def load(path: Path, fmt: str, options: Any) -> LoadedModel:
    model = LoadedModel(path=str(path), format="pt2-aoti", framework="pytorch", has_graph=False)
    zf = SafeZip(Path(path))
    try:
        for member in zf.entries:
            name = member.name
            lower = name.casefold()
            if lower.endswith(_NATIVE_SUFFIXES):
                model.unsafe.append(
                    UnsafeContent(
                        what="compiled native code (AOTInductor shared library): "
                        "torch._inductor.aoti_load_package loads and runs it",
                        location=name,
                    )
                )
            elif lower.endswith(_SOURCE_SUFFIXES) and "/aotinductor/" in f"/{lower}":
                model.notes.append(f"{name}: generated source of the compiled model (not run)")
        scan_zip(zf, model)  # pickled constants / sample inputs, as in any torch archive
        weights = [
            m
            for m in zf.entries
            if "/aotinductor/" in f"/{m.name}"
            and not m.name.casefold().endswith(_NATIVE_SUFFIXES + _SOURCE_SUFFIXES)
            and m.size > 0
            and not m.name.endswith((".json", ".txt"))
        ]
    finally:
        zf.close()
    # the constants blob's layout is private to the compiled library: count it, never guess it
    model.inventory = [
        StoredTensor(
            name=m.name,
            shape=(),
            dtype="unknown",
            nbytes=m.size,
            weight_like=True,
            skip=SkipReason.UNSAFE,
            detail="AOTInductor constants blob (layout private to the compiled library)",
        )
        for m in weights
    ]
    for m in weights:
        model.skip(
            m.name,
            "AOTInductor constants blob: layout private to the compiled library; "
            "audit the checkpoint it was compiled from",
            SkipReason.UNSAFE,
        )
    model.notes.append(
        "an AOTInductor package (compiled model code): its weights are not "
        "analysed; audit the checkpoint it was compiled from"
    )
    return model
