"""`ringbit models import` failing before it needs a platform: a catalog entry whose package is
missing names its install command; an unreachable MLflow exits 1 with a hint (nothing listens on
the port, no server is started).

Moved from tests/integration/test_models_import.py (imports into a real platform stay there)."""

from __future__ import annotations

import pytest

from conftest import ringbit
from helpers import free_port

from ringbit.models.catalog import CATALOG, CatalogEntry, CatalogError, resolve


def test_catalog_entry_without_its_package_names_the_install_command(monkeypatch, tmp_path):
    ghost = CatalogEntry(name="ghost-7b", package="ringbit_no_such_package_xyz", file="ghost.gguf",
                         install="pip install ringbit-ghost==1.0", license="mit", upstream="nobody/ghost")
    with pytest.raises(CatalogError, match=r"not installed .*install it with: pip install ringbit-ghost==1.0"):
        resolve("ghost-7b", {"ghost-7b": ghost})

    from typer.testing import CliRunner

    from ringbit.cli import app

    monkeypatch.setitem(CATALOG, "ghost-7b", ghost)
    out = CliRunner().invoke(app, ["models", "import", "ghost-7b"])
    assert out.exit_code == 2, out.output
    assert "pip install ringbit-ghost==1.0" in out.output and "Traceback" not in out.output

    # a file / folder gets a slug of its name; a catalog name its own name
    (tmp_path / "My Model.Q4_K.gguf").write_bytes(b"")
    assert resolve(str(tmp_path / "My Model.Q4_K.gguf"))[1] == "my-model-q4-k"
    help_text = ringbit("models", "import", "--help").stdout
    assert "smollm2-135m-instruct" in help_text


def test_unreachable_mlflow_exits_1_with_a_hint(sources):
    proc = ringbit("models", "import", str(sources["gguf"]), "--mlflow-uri", f"http://127.0.0.1:{free_port()}",
                   timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "is the platform up? run `ringbit up`" in proc.stderr and "Traceback" not in proc.stderr
    assert "reading" not in proc.stdout + proc.stderr
