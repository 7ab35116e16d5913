"""relay's settings: a TOML file, overridden by RELAY_* environment variables.

``RELAY_SENSE__CLIENT_ID`` sets ``[sense] client_id``; lists are JSON
(``RELAY_SERVER__HOOK_TOKENS='["a", "b"]'``).
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from relay import errors

# Sense's documented ceilings ("500 updates at a time under 256 kb after
# compression"); settings may lower them, never raise them.
SENSE_MAX_RECORDS = 500
SENSE_MAX_COMPRESSED_BYTES = 262_144
CONFIG_PATH_VARIABLE = "RELAY_CONFIG"
# RELAY_<NAME>_FILE names a file holding the value of RELAY_<NAME>.
FILE_SUFFIX = "_file"
ASYMMETRIC_JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"}
)
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
    # None: one worker per core beyond the first (see worker_count).
    validation_workers: int | None = Field(None, ge=0)

    def worker_count(self) -> int:
        """How many processes validate large hooks beside the daemon."""
        if self.validation_workers is not None:
            return self.validation_workers
        # The daemon's event loop keeps one core busy under load; workers can
        # use the others. Where it can be read (Linux), the CPUs this process
        # may run on count, not the machine's, which a cpuset restricts.
        if hasattr(os, "sched_getaffinity"):
            cpus = len(os.sched_getaffinity(0))
        else:
            cpus = os.cpu_count() or 1
        return max(cpus - 1, 0)


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


class WritebackSettings(Section):
    """The public listener that receives Sense's write-backs, and the ATS side."""

    enabled: bool = False
    host: str = "0.0.0.0"
    port: int = Field(8443, ge=0, le=65535)
    path: str = Field("/writeback", pattern=r"^/")
    tokens: list[SecretStr] = []
    query_param: str = "token"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    behind_tls_proxy: bool = False
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[str] = ["RS256", "ES256"]
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    max_concurrent_requests: int = Field(32, ge=1)
    ats_url: str = ""
    ats_token: SecretStr = SecretStr("")
    ats_timeout_seconds: float = Field(30.0, gt=0)
    create_timeout_seconds: float = Field(10.0, gt=0)
    max_attempts: int = Field(50, ge=1)
    delivery_concurrency: int = Field(4, ge=1, le=64)

    @pydantic.field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        # A shared-secret algorithm would let anyone holding the public key
        # (published in the JWKS) sign tokens: refuse HS* and "none".
        for name in algorithms:
            if name not in ASYMMETRIC_JWT_ALGORITHMS:
                allowed = ", ".join(sorted(ASYMMETRIC_JWT_ALGORITHMS))
                raise ValueError(f"{name!r} is not one of {allowed}")
        return algorithms


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


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
    writeback: WritebackSettings = WritebackSettings()

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
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            Environment(settings_cls),
            SecretFiles(settings_cls),
        ]
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, Path(toml_file)))
        return tuple(sources)


class Environment(EnvSettingsSource):
    """RELAY_* variables, but for the *_FILE ones, which name a secret's file."""

    def _load_env_vars(self) -> Mapping[str, str | None]:
        variables = super()._load_env_vars()
        return {k: v for k, v in variables.items() if not k.endswith(FILE_SUFFIX)}


class SecretFiles(EnvSettingsSource):
    """Settings kept in files, so that secrets stay out of the environment.

    ``RELAY_SENSE__CLIENT_SECRET_FILE=/run/secrets/sense`` (Docker and
    Kubernetes secrets) and systemd credentials named after the variable
    (``LoadCredential=RELAY_SENSE__CLIENT_SECRET:...``), which systemd puts
    in ``$CREDENTIALS_DIRECTORY``. A trailing newline is not part of the value.
    """

    def _load_env_vars(self) -> Mapping[str, str | None]:
        values = _credentials(os.environ.get("CREDENTIALS_DIRECTORY"))
        for name, path in os.environ.items():
            upper = name.upper()
            if not (upper.startswith("RELAY_") and upper.endswith(FILE_SUFFIX.upper())):
                continue
            target = name[: -len(FILE_SUFFIX)]
            if target in os.environ:
                raise errors.ConfigError(f"{target} and {name} are both set; keep one")
            values[target.lower()] = _read_secret(Path(path), name)
        return values


def _credentials(directory: str | None) -> dict[str, str | None]:
    if not directory:
        return {}
    return {
        path.name.lower(): _read_secret(path, f"credential {path.name}")
        for path in sorted(Path(directory).iterdir())
        if path.name.upper().startswith("RELAY_")
    }


def _read_secret(path: Path, origin: str) -> str:
    try:
        return path.read_text("utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"{origin}: cannot read {path}: {exc}") from None


def load(path: Path | None = None, **overrides: Any) -> Settings:
    """Reads settings, raising ConfigError naming the first bad setting."""
    if path is not None:
        _check_readable(path)
    token = _toml_path.set(path)
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(_describe(exc)) from None
    except SettingsError as exc:
        # A list variable or secret file that is not JSON, say.
        hint = 'lists are JSON, such as ["a", "b"]'
        raise errors.ConfigError(f"{exc} ({hint})") from None
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


def require_writeback(settings: Settings) -> None:
    """Raises ConfigError unless an enabled write-back listener can run safely."""
    writeback = settings.writeback
    if not writeback.enabled:
        return
    has_tls = writeback.tls_cert is not None and writeback.tls_key is not None
    if not has_tls and not writeback.behind_tls_proxy:
        raise errors.ConfigError(
            "settings writeback.tls_cert and writeback.tls_key are required "
            "unless writeback.behind_tls_proxy is true (Sense sends over HTTPS)"
        )
    if not writeback.tokens and not writeback.oidc_issuer:
        raise errors.ConfigError(
            "setting writeback.tokens (RELAY_WRITEBACK__TOKENS) or "
            "writeback.oidc_issuer is required: write-backs must be authenticated"
        )
    if writeback.oidc_issuer and not writeback.oidc_audience:
        raise errors.ConfigError(_missing("writeback.oidc_audience"))
    if not writeback.ats_url:
        raise errors.ConfigError(_missing("writeback.ats_url"))
    if not writeback.ats_token.get_secret_value():
        raise errors.ConfigError(_missing("writeback.ats_token"))


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
