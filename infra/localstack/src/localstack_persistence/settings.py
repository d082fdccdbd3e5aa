"""The persistence plugin's configuration, read once from LocalStack's environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENABLE_VARIABLE = "STATE_PERSISTENCE"
DIR_VARIABLE = "LOCALSTACK_STATE_DIR"
INTERVAL_VARIABLE = "STATE_SAVE_INTERVAL"
DEFAULT_SAVE_INTERVAL = 30.0


class SettingsError(ValueError):
    """A persistence variable has a wrong value; the message names it."""


class PersistenceSettings(BaseSettings):
    """``STATE_PERSISTENCE`` turns the plugin on; ``LOCALSTACK_STATE_DIR`` is where snapshots go (default: ``state``
    next to LocalStack's ``lib`` folder, i.e. ``/var/lib/localstack/state`` in a container); ``STATE_SAVE_INTERVAL``
    is the period of the background save in seconds (0: save only at shutdown)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    enabled: bool = Field(default=False, alias="STATE_PERSISTENCE")
    state_dir: Path | None = Field(default=None, alias="LOCALSTACK_STATE_DIR")
    save_interval: float = Field(default=DEFAULT_SAVE_INTERVAL, alias="STATE_SAVE_INTERVAL", ge=0)

    def directory(self, default: Path) -> Path:
        return (self.state_dir or default).absolute()


def load_settings(environ: dict[str, str] | None = None) -> PersistenceSettings:
    """The settings from ``environ`` (default: the process environment); errors name the variable."""
    try:
        if environ is None:
            return PersistenceSettings()
        return PersistenceSettings.model_validate(
            {k: v for k, v in environ.items() if k in (ENABLE_VARIABLE, DIR_VARIABLE, INTERVAL_VARIABLE)}
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}={error.get('input')!r}: {error['msg']}"
            for error in exc.errors()
        )
        raise SettingsError(f"invalid persistence setting: {problems}") from exc


def is_enabled(environ: dict[str, str] | None = None) -> bool:
    """Whether ``STATE_PERSISTENCE`` is on; a wrong value counts as on, so the error gets logged at start-up."""
    try:
        return load_settings(environ).enabled
    except SettingsError:
        return True
