"""relay's settings: a TOML file, overridden by RELAY_* environment variables.

``RELAY_SENSE__CLIENT_ID`` sets ``[sense] client_id``; lists are JSON
(``RELAY_SERVER__HOOK_TOKENS='["a", "b"]'``).
"""

from __future__ import annotations

import contextvars
import os
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from relay import errors

# Sense's documented ceilings ("500 updates at a time under 256 kb after
# compression"); settings may lower them, never raise them.
SENSE_MAX_RECORDS = 500
SENSE_MAX_COMPRESSED_BYTES = 262_144
CONFIG_PATH_VARIABLE = "RELAY_CONFIG"
_toml_path: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "toml_path", default=None
)


class Section(BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    hook_tokens: list[SecretStr] = []
    max_request_records: int = Field(5_000, ge=1)
    max_request_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class SenseSettings(Section):
    base_url: str = "https://partner-api.sensehq.com/v1"
    token_url: str = "https://partner-auth.sensehq.com/oauth2/token"
    client_id: str = ""
    client_secret: SecretStr = SecretStr("")
    request_timeout_seconds: float = Field(30.0, gt=0)
    token_margin_seconds: float = Field(30.0, ge=0)
    compress: bool = True


class OutboxSettings(Section):
    path: Path = Path("relay-outbox.db")
    durability: Literal["full", "normal"] = "full"
    max_records: int = Field(5_000_000, ge=1)
    max_bytes: int = Field(4 * 1024**3, ge=1024)
    skip_unchanged: bool = True


class FlushSettings(Section):
    max_records: int = Field(SENSE_MAX_RECORDS, ge=1, le=SENSE_MAX_RECORDS)
    max_compressed_bytes: int = Field(256_000, ge=1024, le=SENSE_MAX_COMPRESSED_BYTES)
    max_age_seconds: float = Field(300.0, gt=0)
    compression_level: int = Field(6, ge=1, le=9)
    concurrency: int = Field(2, ge=1, le=8)


class RetrySettings(Section):
    base_seconds: float = Field(1.0, gt=0)
    cap_seconds: float = Field(300.0, gt=0)


class ShutdownSettings(Section):
    drain_timeout_seconds: float = Field(20.0, ge=0)


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class Settings(BaseSettings):
    """Everything relay can be told; see config/relay.example.toml."""

    model_config = SettingsConfigDict(
        env_prefix="RELAY_", env_nested_delimiter="__", extra="forbid"
    )

    server: ServerSettings = ServerSettings()
    sense: SenseSettings = SenseSettings()
    outbox: OutboxSettings = OutboxSettings()
    flush: FlushSettings = FlushSettings()
    retry: RetrySettings = RetrySettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    log: LogSettings = LogSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_file = _toml_path.get() or os.environ.get(CONFIG_PATH_VARIABLE)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, Path(toml_file)))
        return tuple(sources)


def load(path: Path | None = None, **overrides: Any) -> Settings:
    """Reads settings, raising ConfigError naming the first bad setting."""
    if path is not None:
        _check_readable(path)
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(_describe(exc)) from None
    except ValueError as exc:  # tomllib.TOMLDecodeError among them
        source = f"configuration file {path}" if path else "configuration"
        raise errors.ConfigError(f"{source} is not valid TOML: {exc}") from None
    finally:
        _toml_path.reset(token)


def require_sense_credentials(settings: Settings) -> None:
    """Raises ConfigError unless relay can authenticate to Sense."""
    if not settings.sense.client_id:
        raise errors.ConfigError(_missing("sense.client_id"))
    if not settings.sense.client_secret.get_secret_value():
        raise errors.ConfigError(_missing("sense.client_secret"))


def _missing(name: str) -> str:
    variable = "RELAY_" + name.upper().replace(".", "__")
    return f"setting {name} (or {variable}) is required"


def _check_readable(path: Path) -> None:
    if not path.is_file():
        raise errors.ConfigError(f"configuration file {path} does not exist")


def _describe(exc: pydantic.ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    name = ".".join(str(part) for part in error["loc"])
    variable = "RELAY_" + name.upper().replace(".", "__")
    return f"setting {name} ({variable}) is invalid: {error['msg']}"
