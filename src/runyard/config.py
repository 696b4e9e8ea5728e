"""``runyard.toml``: one validated configuration for the gateway, the server and embedded mode.

Strings may use ``${VAR}`` or ``${VAR:-default}`` to read the environment. With no file the
built-in providers are served with the defaults of their official SDKs (``OPENAI_BASE_URL``,
``OPENAI_API_KEY``, ``ANTHROPIC_BASE_URL``, ``ANTHROPIC_API_KEY``) plus ``dummy``.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic import ValidationError as PydanticValidationError

from .agent_settings import AgentsConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_CONFIG_FILE = "runyard.toml"
MODEL_SEPARATOR = "::"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProviderConfig(_Strict):
    kind: str
    base_url: str | None = None
    api_key_env: str | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=120.0, gt=0, description="read timeout between bytes, seconds")
    max_connections: int = Field(default=512, ge=1)
    headers: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict, description="provider-specific settings")
    ca_bundle: str | None = Field(default=None, description="PEM file of CAs to trust for this upstream's TLS")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from .providers import PROVIDER_KINDS

        if kind not in PROVIDER_KINDS:
            raise ValueError(f"unknown provider kind {kind!r} (known: {', '.join(sorted(PROVIDER_KINDS))})")
        return kind

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class RouteConfig(_Strict):
    provider: str
    model: str


Capability = Literal["chat", "tools", "json_schema", "vision", "embed", "image", "tts", "asr", "realtime"]
TaskTag = Literal["general", "reasoning", "coding", "long_context"]


class PriceConfig(_Strict):
    """USD per 1M tokens; ``cached`` prices cached input tokens (defaults to ``input``); ``batch``
    is the price of the same call through the provider's batch API (``batch_mode``), if it has one."""

    input: float = Field(ge=0)
    output: float = Field(default=0.0, ge=0)
    cached: float | None = Field(default=None, ge=0)
    batch: PriceConfig | None = Field(default=None, description="the batch API's price (e.g. half the live one)")

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Exact cost: uncached input, cached input and output (reasoning tokens are output)."""
        cached = min(cached_tokens, input_tokens)
        cached_price = self.input if self.cached is None else self.cached
        return ((input_tokens - cached) * self.input + cached * cached_price + output_tokens * self.output) / 1e6

    @property
    def blended(self) -> float:
        """One number to rank models by price (3:1 input:output, a common traffic mix)."""
        return (3 * self.input + self.output) / 4


class ModelConfig(_Strict):
    """A model name: its routes (tried in order) and, for the catalog, what it can do and costs."""

    routes: list[RouteConfig] = Field(min_length=1)
    capabilities: list[Capability] = Field(default_factory=lambda: list[Capability](["chat"]))
    context_window: int | None = Field(default=None, ge=1)
    price: PriceConfig | None = None
    quality: int = Field(default=3, ge=1, le=5)
    tasks: list[TaskTag] = Field(default_factory=lambda: list[TaskTag](["general"]))
    routable: bool = Field(default=True, description="a candidate for task/prefer routing (needs a price)")

    @field_validator("routes", mode="before")
    @classmethod
    def _parse_shorthand(cls, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        out = []
        for item in value:
            if isinstance(item, str):
                provider, sep, model = item.partition(MODEL_SEPARATOR)
                if not sep or not provider or not model:
                    raise ValueError(f"route {item!r} must be 'provider::model'")
                out.append({"provider": provider, "model": model})
            else:
                out.append(item)
        return out


class MetricConfig(_Strict):
    type: Literal["boolean", "float"]
    level: Literal["inference", "episode"] = "inference"
    optimize: Literal["max", "min"] = "max"


class StorageConfig(_Strict):
    url: str = "sqlite+aiosqlite:///.runyard/runyard.db"
    record_inferences: bool = True
    recording: Literal["async", "sync"] = Field(
        default="async",
        description="sync: an inference's row is written before its answer leaves; async: buffered (see README)",
    )
    flush_interval_ms: int = Field(default=200, ge=1)
    # 100: a flush builds its rows on the event loop; 500-row batches doubled p99 at 1,000 req/s (bench/README.md)
    batch_size: int = Field(default=100, ge=1)
    max_buffer: int = Field(default=100_000, ge=1)
    max_buffer_bytes: int = Field(default=256 * 1024 * 1024, ge=1, description="rows' inputs and outputs at most")
    pool_size: int = Field(default=10, ge=1, description="connections kept open (Postgres)")
    max_overflow: int = Field(default=20, ge=0, description="extra connections under load (Postgres)")
    pool_timeout_s: float = Field(default=30.0, gt=0, description="wait for a free connection before failing")

    @field_validator("url")
    @classmethod
    def _driver_installed(cls, url: str) -> str:
        """The store is async: a URL naming a blocking driver (or none) is refused up front."""
        scheme = url.partition("://")[0].lower()
        if scheme in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+pg8000"):
            raise ValueError(f"{scheme}:// needs the async driver: write postgresql+asyncpg://...")
        if scheme in ("sqlite", "sqlite+pysqlite"):
            raise ValueError(f"{scheme}:// needs the async driver: write sqlite+aiosqlite:///path/to/runyard.db")
        return known_scheme(url, _STORE_DRIVERS)


class RedisConfig(_Strict):
    """``[redis]``: shared state for several gateways and workers (limits, cache, idempotency, ...)."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = Field(default="runyard:", description="key prefix: deployments and test runs can share one Redis")

    @field_validator("url")
    @classmethod
    def _driver_installed(cls, url: str) -> str:
        return known_scheme(url, _REDIS_DRIVERS)


# URL scheme -> (the module it needs, the extra that installs it)
_STORE_DRIVERS: dict[str, tuple[str, str | None]] = {
    "sqlite+aiosqlite": ("aiosqlite", None),
    "postgresql+asyncpg": ("asyncpg", "postgres"),
}
_REDIS_DRIVERS: dict[str, tuple[str, str | None]] = {s: ("redis", "redis") for s in ("redis", "rediss", "unix")}


def known_scheme(url: str, drivers: dict[str, tuple[str, str | None]]) -> str:
    scheme = url.partition("://")[0].lower()
    if scheme not in drivers:
        raise ValueError(f"unsupported URL scheme {scheme!r} (supported: {', '.join(sorted(drivers))})")
    return url


def missing_driver(url: str, drivers: dict[str, tuple[str, str | None]]) -> str | None:
    """Why ``url`` cannot be used here (its driver is not installed), or None."""
    import importlib.util

    scheme = url.partition("://")[0].lower()
    module, extra = drivers[scheme]
    if importlib.util.find_spec(module) is not None:
        return None
    hint = f"pip install 'runyard[{extra}]'" if extra else f"pip install {module}"
    return f"{scheme} needs the {module!r} package, which is not installed ({hint})"


EMBEDDED_IDEMPOTENCY_MAX_BYTES = 4 * 1024 * 1024


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    api_keys: list[str] = Field(default_factory=list, description="hashed keys: 'sha256:<hex>'")
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    # answers one process keeps for Idempotency-Key replays, oldest dropped first (embedded: 4 MiB
    # unless set, see RunyardConfig.for_embedded); with [redis] the answers expire there instead
    idempotency_max_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    api_key_refresh_s: float = Field(
        default=1.0, gt=0, le=60, description="how often store keys are reloaded: a revoked key fails within this"
    )
    shared_namespaces: list[str] = Field(
        default_factory=list,
        description="workflow / agent namespaces every workspace may read and run (only their owner writes them)",
    )

    @field_validator("api_keys")
    @classmethod
    def _hashed_only(cls, keys: list[str]) -> list[str]:
        for key in keys:
            algo, _, digest = key.partition(":")
            if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
                raise ValueError(
                    "api keys must be stored hashed as 'sha256:<64 hex digits>' (make one with `runyard keys hash`)"
                )
        return keys


class AppsConfig(_Strict):
    """``[apps]``: where Python apps come from, aliases, and what their requirements can use."""

    modules: list[str] = Field(default_factory=list, description="modules imported at start; their apps register")
    builtin: bool = Field(default=True, description="serve the model apps runyard/chat and runyard/embed")
    aliases: dict[str, dict[str, str]] = Field(
        default_factory=dict, description='{"ns/name": {"main": "1.0.0"}}: @main resolves to 1.0.0'
    )
    secrets: dict[str, str] = Field(default_factory=dict, description="secrets apps may require (ctx.secrets)")
    integrations: dict[str, dict[str, Any]] = Field(default_factory=dict)
    default_namespace: str | None = Field(default=None, description="where a bare app name ('my-app') is looked up")


class WorkersConfig(_Strict):
    """``[workers]``: the task queue's execution settings (pool ``shared`` unless overridden)."""

    concurrency: int = Field(default=4, ge=1, le=1024, description="tasks at once in the default pool")
    lease_s: float = Field(default=30.0, gt=0, description="a claimed task not heartbeated this long is re-queued")
    max_attempts: int = Field(default=3, ge=1)
    poll_interval_s: float = Field(default=0.5, gt=0, description="how often a worker in another process polls")
    cancel_grace_s: float = Field(default=5.0, ge=0, description="after a cancel, async apps are interrupted")
    session_sweep_s: float = Field(default=1.0, gt=0)


class PoolConfig(_Strict):
    concurrency: int = Field(default=1, ge=1, le=1024)


class WebhooksConfig(_Strict):
    """``[webhooks]``: completion callbacks, signed the Standard Webhooks way (``runyard.webhooks``)."""

    secret: str = ""
    allow_private_webhooks: bool = Field(default=False, description="allow loopback/private/link-local targets")
    max_attempts: int = Field(default=5, ge=1)
    initial_backoff_s: float = Field(default=1.0, ge=0)
    timeout_s: float = Field(default=10.0, gt=0)


class FilesConfig(_Strict):
    dir: str = Field(default=".runyard/files", description="local blob directory (content-addressed)")
    max_upload_bytes: int = Field(default=100 * 1024 * 1024, ge=1, description="largest accepted file")
    public_url: str | None = Field(
        default=None, description="base URL for access_url (behind a proxy); default: the request's own"
    )


class CatalogConfig(_Strict):
    defaults: bool = Field(default=True, description="include the shipped catalog of public models")


class CacheConfig(_Strict):
    strategy: Literal["vendor", "runyard", "none"] = "vendor"
    ttl_s: float = Field(default=3600, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    max_bytes: int = Field(default=64 * 1024 * 1024, ge=1, description="answers' bytes (text; JSON on Redis)")


class RoutingConfig(_Strict):
    max_cost_multiplier: float = Field(default=1.5, ge=1.0)
    breaker_failures: int = Field(default=5, ge=1, description="consecutive failures that open a route's circuit")
    breaker_cooldown_s: float = Field(default=30.0, gt=0)


class LimitsConfig(_Strict):
    """``[limits]``: default per-key limits; a key's own (``runyard keys create --rpm-sync ...``) win.

    Unset means unlimited. ``window_s`` is the rate window (60: per minute). With no API keys
    configured the gateway has no caller identity: ``unauthenticated = "per_ip"`` then applies
    the request limits (not tokens or spend) per client IP; ``"off"`` (default) applies none.
    """

    rpm_sync: int | None = Field(default=None, ge=1, description="sync requests per window")
    rpm_async: int | None = Field(default=None, ge=1, description="async submissions (runs without wait) per window")
    tpm: int | None = Field(default=None, ge=1, description="tokens (input + output) per window")
    spend_limit: float | None = Field(default=None, ge=0, description="USD per period (from the catalog's prices)")
    period: Literal["day", "month"] = "month"
    window_s: float = Field(default=60.0, gt=0, le=3600)
    plan: str = Field(default="default", description="the plan name /v1/usage/limits reports")
    unauthenticated: Literal["off", "per_ip"] = "off"


class TelemetryConfig(_Strict):
    """``[telemetry]``: Prometheus metrics at ``/metrics``, OpenTelemetry traces, logs (README "Operate")."""

    metrics: bool = Field(default=True, description="serve /metrics and count (off: no cost)")
    metrics_token: str | None = Field(
        default=None, description="hashed 'sha256:<hex>' bearer token for /metrics (besides admin keys)"
    )
    otlp_endpoint: str | None = Field(default=None, description="OTLP/HTTP collector URL; unset: no tracing")
    service_name: str = "runyard"
    sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0, description="share of new traces kept")
    log_format: Literal["text", "json"] = "text"
    access_log: bool = Field(default=False, description="one log line per request")

    @field_validator("metrics_token")
    @classmethod
    def _hashed_token(cls, token: str | None) -> str | None:
        algo, _, digest = (token or "sha256:" + "0" * 64).partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("metrics_token must be stored hashed as 'sha256:<64 hex digits>' (`runyard keys hash`)")
        return token


class RunyardConfig(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    redis: RedisConfig | None = Field(default=None, description="absent: all shared state stays in-process")
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    embedding_models: dict[str, ModelConfig] = Field(default_factory=dict)
    metrics: dict[str, MetricConfig] = Field(default_factory=dict)
    files: FilesConfig = Field(default_factory=FilesConfig)
    apps: AppsConfig = Field(default_factory=AppsConfig)
    agents: AgentsConfig = Field(default_factory=AgentsConfig)
    workers: WorkersConfig = Field(default_factory=WorkersConfig)
    pools: dict[str, PoolConfig] = Field(default_factory=dict)
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    # the config file's folder: [apps] modules are imported from there (then the working directory)
    _source_dir: Path | None = PrivateAttr(default=None)

    @property
    def source_dir(self) -> Path | None:
        return self._source_dir

    def for_embedded(self) -> RunyardConfig:
        """This config for a gateway inside its caller's process: that process is its only client,
        so it keeps 4 MiB of answers for Idempotency-Key replays unless the file sets
        ``[server] idempotency_max_bytes``."""
        if "idempotency_max_bytes" in self.server.model_fields_set:
            return self
        server = self.server.model_copy(update={"idempotency_max_bytes": EMBEDDED_IDEMPOTENCY_MAX_BYTES})
        return self.model_copy(update={"server": server})

    def model_post_init(self, __context: Any) -> None:
        merged = default_providers()
        merged.update(self.providers)
        self.providers = merged
        if self.catalog.defaults:
            shipped = shipped_catalog()
            self.models = {**shipped["models"], **self.models}
            self.embedding_models = {**shipped["embedding_models"], **self.embedding_models}
        for section in ("models", "embedding_models"):
            for name, model in getattr(self, section).items():
                for i, route in enumerate(model.routes):
                    if route.provider not in self.providers:
                        raise ConfigError(
                            f"{section}.{name}.routes[{i}]: unknown provider {route.provider!r} "
                            f"(known: {', '.join(sorted(self.providers))})"
                        )


def default_providers() -> dict[str, ProviderConfig]:
    """The built-in providers, configured the way their official SDKs read the environment."""
    return {
        "openai": ProviderConfig(
            kind="openai",
            base_url=os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            api_key_env="OPENAI_API_KEY",
        ),
        "anthropic": ProviderConfig(
            kind="anthropic",
            base_url=os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
            api_key_env="ANTHROPIC_API_KEY",
        ),
        "dummy": ProviderConfig(kind="dummy"),
        # local::chat, local::embed, local::tts: on-device models (the `local` extra), no keys.
        "local": ProviderConfig(kind="local"),
    }


def shipped_catalog() -> dict[str, dict[str, ModelConfig]]:
    """The catalog of public models shipped as data (``runyard/data/catalog.toml``)."""
    global _SHIPPED
    if _SHIPPED is None:
        from importlib.resources import files

        raw = tomllib.loads(files("runyard").joinpath("data/catalog.toml").read_text("utf-8"))
        _SHIPPED = {
            section: {name: ModelConfig.model_validate(spec) for name, spec in raw.get(section, {}).items()}
            for section in ("models", "embedding_models")
        }
    return {section: dict(models) for section, models in _SHIPPED.items()}


_SHIPPED: dict[str, dict[str, ModelConfig]] | None = None


def hash_api_key(key: str) -> str:
    """The at-rest form of an API key, as written in ``server.api_keys`` and the store."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: Any, path: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand_env(v, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _format_errors(err: PydanticValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {loc}: {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def parse_config(data: dict[str, Any], source: str = "<config>") -> RunyardConfig:
    """Validate a config mapping; raises :class:`ConfigError` naming each bad key."""
    try:
        config = RunyardConfig.model_validate(_expand_env(data, ""))
    except PydanticValidationError as err:
        raise ConfigError(f"{source}: {_format_errors(err)}") from None
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    check_drivers(config, source)
    return config


def check_drivers(config: RunyardConfig, source: str = "<config>") -> None:
    """One line naming the missing package when a URL's driver is not installed (a ConfigError)."""
    urls = [("storage.url", config.storage.url, _STORE_DRIVERS)]
    if config.redis is not None:
        urls.append(("redis.url", config.redis.url, _REDIS_DRIVERS))
    for key, url, drivers in urls:
        problem = missing_driver(url, drivers)
        if problem:
            raise ConfigError(f"{source}: {key}: {problem}")


def load_config(path: str | os.PathLike[str] | None = None) -> RunyardConfig:
    """Load ``path`` (or ``./runyard.toml`` if present, else the built-in defaults)."""
    if path is None:
        env_path = os.environ.get("RUNYARD_CONFIG")
        if env_path:
            path = env_path
        elif Path(DEFAULT_CONFIG_FILE).is_file():
            path = DEFAULT_CONFIG_FILE
        else:
            return parse_config({}, "<defaults>")
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise ConfigError(f"{p}: cannot read config file: {err.strerror or err}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{p}: not valid TOML: {err}") from None
    config = parse_config(data, str(p))
    config._source_dir = p.resolve().parent
    return config
