"""ringbit.services' PlatformSettings: environment, overrides and defaults (no processes started).

Moved from tests/integration/test_services.py (the real up/down cycle stays there).
"""

from __future__ import annotations

from ringbit.services import PlatformSettings


def test_settings_from_env_then_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("RINGBIT_HOME", str(tmp_path))
    monkeypatch.setenv("RINGBIT_MLFLOW_PORT", "5123")
    settings = PlatformSettings.from_env(dashboard_port=9000, ray_port=None)
    assert settings.home == tmp_path.resolve()
    assert (settings.ray_port, settings.dashboard_port, settings.mlflow_port) == (6379, 9000, 5123)
    assert settings.ray_address == "127.0.0.1:6379"
    assert settings.dashboard_url == "http://127.0.0.1:9000"
    assert settings.mlflow_url == "http://127.0.0.1:5123"


def test_default_home_is_absolute(monkeypatch):
    """The default ~/.ringbit is expanded: a relative home would scatter state by working dir."""
    monkeypatch.delenv("RINGBIT_HOME", raising=False)
    home = PlatformSettings.from_env().home
    assert home.is_absolute() and "~" not in str(home) and home.name == ".ringbit"
