"""Settings: one documented list, one precedence rule.

Precedence, highest first: CLI flags (or keyword arguments to :meth:`Settings.load`) >
``GRISTMILL_*`` environment variables > ``.env`` in the current directory >
``gristmill.toml`` in the current directory > the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from gristmill.audio.events import (
    DEFAULT_CLASSES,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_DURATION,
    DEFAULT_RELEASE,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
)
from gristmill.errors import ConfigError

__all__ = ["ApiToken", "Settings"]

EmbedderName = Literal["minilm", "openai", "bedrock", "none"]
_SECRETS = frozenset({"api_token", "database_url"})
Scope = Literal["read", "admin"]


class ApiToken(BaseModel):
    """A bearer token the API accepts, as ``[[api_tokens]]`` in ``gristmill.toml``.

    Only the token's SHA-256 is stored, so the file is not itself a credential
    (``gristmill token new`` makes a token and prints its entry).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Who holds it; shown in the server log.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                        description="Hex SHA-256 of the token (lower case).")
    scope: Scope = Field("read", description="`read`: GET routes only; `admin`: also "
                         "starts, pauses, resumes and cancels jobs.")


def _default_workers() -> int:
    # sched_getaffinity honours cgroup/taskset limits where cpu_count() does not.
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class Settings(BaseSettings):
    """Every setting gristmill reads. Environment names are ``GRISTMILL_`` + the upper name."""

    model_config = SettingsConfigDict(
        env_prefix="GRISTMILL_",
        env_file=".env",
        env_file_encoding="utf-8",
        toml_file="gristmill.toml",
        extra="ignore",
        validate_default=True,
    )

    home: Path = Field(Path(".gristmill"), description="Folder holding everything the KB owns.")
    embedder: EmbedderName = Field(
        "minilm", description="Embedding model: `minilm` (bundled, offline), `openai` (any "
        "OpenAI-compatible `/embeddings` endpoint: `embed_url`, `embed_model`), `bedrock` "
        "(AWS Bedrock: `bedrock_model_id`, pip install 'gristmill[bedrock]') or `none`."
    )
    model_path: Path | None = Field(
        None,
        description="A `model.onnx` (or a folder holding one) to use instead of the "
        "packaged MiniLM file; its sha256 must match the pinned one.",
    )
    workers: int = Field(default_factory=_default_workers, ge=1, le=256,
                         description="Extraction worker processes.")
    window: int | None = Field(
        None, ge=1, description="Items in flight at most (default: 4 x workers)."
    )
    item_timeout: float = Field(300.0, gt=0, description="Seconds before a worker is killed.")
    lease_seconds: float = Field(120.0, gt=1, description="Lease on a claimed item.")
    max_tasks_per_worker: int = Field(100, ge=1, description="Recycle a worker after N items.")
    worker_max_rss_mb: int = Field(
        1024, ge=64, description="Recycle a worker whose RSS is above this between items."
    )
    worker_memory_limit_mb: int = Field(
        4096, ge=256, description="Hard address-space limit of a worker (0 = none)."
    )
    max_attempts: int = Field(3, ge=1, description="Tries for transient failures.")
    max_crashes: int = Field(
        2, ge=1, description="Worker deaths or timeouts before an item is quarantined."
    )
    max_file_mb: int = Field(1024, ge=1, description="Larger files are skipped.")
    max_source_kb: int = Field(
        2048, ge=1, description="Larger source files (code, templates, markup in git work "
        "trees) are skipped: generated or vendored code, most likely.")
    include_vendored: bool = Field(
        False, description="Also read vendored and generated folders of git work trees "
        "(node_modules, vendor, target, build, dist, ...), which are skipped by default.")
    max_text_chars: int = Field(
        50_000_000, ge=1000, description="Text kept per item; the rest is cut with a note."
    )
    ocr_engine: Literal["tesseract", "rapidocr"] = Field(
        "tesseract", description="OCR engine: `tesseract` (Debian package) or `rapidocr` "
        "(PP-OCRv4 on onnxruntime, CUDA when available; pip install 'gristmill[rapidocr]').")
    ocr_lang: str = Field(
        "eng", pattern=r"^[A-Za-z0-9_]+(/[A-Za-z0-9_]+)?(\+[A-Za-z0-9_]+(/[A-Za-z0-9_]+)?)*$",
        description="Tesseract languages for OCR, joined by `+` (`eng+deu`); each needs "
        "its tesseract-ocr-LANG package.")
    ocr_dpi: int = Field(300, ge=72, le=600,
                         description="Resolution scanned PDF pages are rendered at for OCR.")
    chunk_tokens: int = Field(200, ge=16, le=512, description="Target chunk size in tokens.")
    flush_ops: int = Field(500, ge=1, description="Batcher: flush after this many rows.")
    flush_seconds: float = Field(1.0, gt=0, description="Batcher: flush at least this often.")
    # 256, not 64: texts are length-sorted within a unit before they are cut into model
    # calls, and a larger unit pads less (measured: 9.8 % padding at 64, 3 % at 256).
    embed_batch: int = Field(
        256, ge=1, le=4096,
        description="Chunks handed to the embedding stage at once (committed together).")
    embed_batch_tokens: int = Field(
        4096, ge=256, description="Padded tokens per model call; bounds its memory.")
    embed_threads: int | None = Field(
        None, ge=1, description="onnxruntime intra-op threads (default: all cores)."
    )
    # Remote embedders (embedder = "openai" or "bedrock"): gristmill.embed.openai/bedrock.
    embed_url: str | None = Field(
        None, description="`embedder = openai`: the base URL its `/embeddings` is under "
        "(`https://api.openai.com/v1`, `http://localhost:11434/v1` for Ollama, "
        "`https://NAME.openai.azure.com/openai/deployments/DEPLOYMENT` for Azure).")
    embed_model: str | None = Field(
        None, description="`embedder = openai`: the model name sent with each request "
        "(`text-embedding-3-small`, `nomic-embed-text`).")
    embed_dimensions: int | None = Field(
        None, ge=1, le=65_536, description="Vector length to ask a remote model for "
        "(OpenAI `dimensions`, Titan v2 `dimensions`); unset: the model's own.")
    embed_api_key_env: str = Field(
        "OPENAI_API_KEY", min_length=1, description="`embedder = openai`: the environment "
        "variable holding the API key; read again whenever the server answers 401.")
    embed_api_key_file: Path | None = Field(
        None, description="`embedder = openai`: a file holding the API key (used instead "
        "of `embed_api_key_env`); read again whenever the server answers 401.")
    embed_token_command: str | None = Field(
        None, description="`embedder = openai`: a shell command whose output is the key "
        "or token (used instead of the file and the variable); run again whenever the "
        "server answers 401.")
    embed_api_key_header: Literal["authorization", "api-key"] = Field(
        "authorization", description="`embedder = openai`: how the key is sent: "
        "`authorization` (`Bearer KEY`) or `api-key` (Azure OpenAI's key header).")
    embed_api_version: str | None = Field(
        None, description="`embedder = openai`: sent as the `api-version` query "
        "parameter (Azure OpenAI, e.g. `2024-10-21`).")
    embed_concurrency: int = Field(
        4, ge=1, le=64, description="Requests a remote embedder has in flight at once.")
    embed_rpm: int = Field(
        0, ge=0, description="Requests per minute a remote embedder may make (0 = no "
        "budget); over it, calls wait.")
    embed_tpm: int = Field(
        0, ge=0, description="Tokens per minute (estimated) a remote embedder may send "
        "(0 = no budget); over it, calls wait.")
    embed_timeout: float = Field(
        60.0, gt=0, le=3600, description="Seconds a remote embedding request may take "
        "before it is retried.")
    embed_max_retries: int = Field(
        6, ge=0, le=100, description="Retries of a remote embedding request after 429, "
        "5xx, a timeout or a connection error (exponential backoff with jitter, at least "
        "the server's Retry-After) before the run stops.")
    embed_request_inputs: int = Field(
        32, ge=1, le=2048, description="Texts sent in one remote embedding request at "
        "most (text-embeddings-inference accepts 32 by default, OpenAI 2048).")
    embed_request_tokens: int = Field(
        8192, ge=256, description="Estimated tokens sent in one remote embedding request "
        "at most.")
    bedrock_region: str | None = Field(
        None, description="`embedder = bedrock`: the AWS region (default: botocore's, "
        "from AWS_REGION or the profile).")
    bedrock_model_id: str = Field(
        "amazon.titan-embed-text-v2:0", min_length=1, description="`embedder = bedrock`: "
        "a Titan (`amazon.titan-embed-text-v2:0`) or Cohere (`cohere.embed-english-v3`, "
        "`cohere.embed-multilingual-v3`) embedding model id.")
    # A secret like the token: a URL may carry a password.
    database_url: SecretStr | None = Field(
        None, description="`postgresql://user:password@host:5432/dbname`: keep the catalog "
        "and the index in PostgreSQL instead of the SQLite file in the home folder.")
    pool_size: int = Field(
        3, ge=1, le=100, description="PostgreSQL connections each gristmill process opens "
        "at most (`serve` opens as many again, read-only, for searches).")
    store_retry_seconds: float = Field(
        60.0, ge=0, le=3600, description="How long a run waits out an unreachable "
        "database (a PostgreSQL restart or failover) before it stops, resumable; "
        "`serve` waits at most 5 s, then answers 503.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # A secret: SecretStr keeps it out of reprs, logs and tracebacks.
    api_token: SecretStr | None = Field(
        None, description="An admin bearer token for `gristmill serve` (more tokens, and "
        "read-only ones, go in gristmill.toml as `[[api_tokens]]`); with no token at all "
        "the server only binds a loopback address.")
    api_tokens: list[ApiToken] = Field(
        default_factory=list, description="Tokens by name, hash and scope (`read` or "
        "`admin`), in gristmill.toml as `[[api_tokens]]`.")
    search_rate_limit: str = Field(
        "20/second;600/minute",
        description="Searches each client (token, or address without one) may make, in "
        "`limits` notation (`N/second;M/minute`); more get 429 with Retry-After.")
    max_query_chars: int = Field(1000, ge=16, le=100_000,
                                 description="Longest search query the API accepts.")
    max_request_kb: int = Field(64, ge=1, le=100_000,
                                description="Largest request body the API accepts (KiB).")
    # Hardening of `gristmill serve` (see SECURITY.md): names, schema, jobs, connections.
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Host names `gristmill serve` answers to besides `localhost` and IP "
        "addresses (comma-separated; `*` = any): the name it is reached by through DNS or "
        "a proxy. Other `Host` headers get 421 (a DNS-rebinding defence).")
    openapi_schema: bool = Field(
        False, description="Serve the OpenAPI schema at `/openapi.json` (behind the token "
        "like every GET route). There is no /docs or /redoc page: they load from a CDN.")
    max_running_jobs: int = Field(
        2, ge=1, le=1000, description="Job processes `gristmill serve` runs at once; "
        "jobs started beyond that stay `queued` until one ends.")
    http_max_connections: int = Field(
        500, ge=10, description="Open connections (event streams included) `gristmill "
        "serve` holds at once; a request beyond that gets 503.")
    http_request_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a client has to send a whole request "
        "(head and body) before `gristmill serve` closes its connection.")
    http_keepalive_timeout: int = Field(
        5, ge=1, le=300, description="Seconds `gristmill serve` keeps an idle "
        "connection open between requests.")
    search_threads: int = Field(
        default_factory=_default_workers, ge=1, le=256,
        description="Searches `gristmill serve` runs at once (default: one per core); "
        "more wait their turn.")
    search_nice: int = Field(
        5, ge=0, le=19, description="Lower CPU priority of `gristmill serve`'s search "
        "threads (a Linux nice increment) so a job running beside it keeps its pace; "
        "0 = the server's own priority.")
    vector_cache_mb: int = Field(
        1024, ge=0, description="Memory `gristmill serve` may hold chunk vectors in for "
        "fast vector search (~1.5 MB per 1,000 chunks); 0 or a bigger index: vectors are "
        "read from SQLite at each search.")
    # NoDecode: the environment gives a plain os.pathsep-separated string, not JSON.
    source_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Folders HTTP API jobs may ingest from (os.pathsep-separated); "
        "none = the API accepts no job source. When set, every run (CLI included) reads "
        "nothing outside them, symlinks included.")
    # `gristmill watch`: how file-system events become pipeline work.
    watch_debounce: float = Field(
        0.5, gt=0, le=60, description="Seconds a changed file must stay quiet before "
        "`watch` indexes it (a burst of writes becomes one change).")
    watch_max_delay: float = Field(
        10.0, gt=0, le=3600, description="A file written to without pause is still "
        "indexed at least this often (seconds).")
    watch_batch: int = Field(
        500, ge=1, le=10_000, description="Changed paths `watch` records in one transaction.")
    watch_queue: int = Field(
        100_000, ge=100, description="Changed paths `watch` holds at most; beyond that it "
        "drops them and rescans its folders (bounded memory).")
    # `gristmill audio scan`: the sound-event model and how its scores become events
    # (gristmill.audio.events documents each step).
    audio_model: Path | None = Field(
        None, description="The sound-event model for `audio scan`: a YAMNet `.tflite` "
        "(needs `pip install 'gristmill[audio]'`) or `.onnx` file. Nothing is downloaded: "
        "get YAMNet from Kaggle Models (`google/yamnet`, formerly TF Hub), TFLite variant.")
    audio_class_map: Path | None = Field(
        None, description="The model's class map CSV (`index,mid,display_name`); default: "
        "`<model>_class_map.csv` or `yamnet_class_map.csv` beside the model.")
    # NoDecode: class names hold commas ("Chuckle, chortle"): the environment separates
    # them with `;`.
    audio_classes: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_CLASSES), min_length=1,
        description="Classes to detect, by name or index (`;`-separated in the "
        "environment); default Laughter (YAMNet's other laughter classes found no "
        "laugh it missed and reported each laugh again: BENCHMARKS.md, Audio).")
    audio_threshold: float = Field(
        DEFAULT_THRESHOLD, gt=0, le=1, description="Smoothed score at which an event "
        "starts.")
    audio_release: float = Field(
        DEFAULT_RELEASE, gt=0, le=1, description="Score below which an event ends "
        "(hysteresis; taken as the threshold when above it).")
    audio_min_duration: float = Field(
        DEFAULT_MIN_DURATION, ge=0, le=3600, description="Shorter events are dropped "
        "(seconds).")
    audio_max_gap: float = Field(
        DEFAULT_MAX_GAP, ge=0, le=3600, description="Events of a class this close "
        "(seconds) are merged into one.")
    audio_smooth: int = Field(
        DEFAULT_SMOOTH, ge=1, le=100, description="Patches (0.48 s each) the scores are "
        "averaged over before thresholding (1: none).")
    audio_clip_padding: float = Field(
        0.5, ge=0, le=60, description="Seconds of audio kept before and after each event "
        "in its clip (`--clips`).")
    audio_clip_format: Literal["wav", "opus", "mp3"] = Field(
        "wav", description="Clip files' format: `wav`, `opus` or `mp3`.")
    audio_threads: int = Field(
        1, ge=1, le=64, description="Model threads per scanning worker (`--workers` "
        "workers scan recordings side by side).")

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()]
        return value

    @field_validator("audio_classes", mode="before")
    @classmethod
    def _split_classes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(";") if part.strip()]
        return value

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("api_token", mode="before")
    @classmethod
    def _blank_token_is_none(cls, value: Any) -> Any:
        # GRISTMILL_API_TOKEN= (set but empty) must not count as a token.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _check_database_url(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if value is None or (isinstance(value, str) and not value.strip()):
            return None  # unset or blank: the SQLite file in the home folder
        if not str(value).startswith(("postgresql://", "postgres://")):
            # No input echoed back: the message must not print a password.
            raise ValueError("write it as postgresql://user:password@host:5432/dbname, or "
                             "leave it unset for the SQLite file in the home folder")
        return value

    @field_validator("search_rate_limit")
    @classmethod
    def _parse_rate(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError("write it as N/second, N/minute or N/hour, joined by `;`"
                             ) from None
        return value

    @model_validator(mode="after")
    def _fill_window(self) -> Settings:
        if self.window is None:
            self.window = self.workers * 4
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings,
                TomlConfigSettingsSource(settings_cls))

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """Build settings from every source; ``None`` overrides are ignored.

        Raises:
            ConfigError: naming the first bad setting and its value.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        try:
            return cls(**given)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"gristmill.toml is not valid TOML: {exc}. Fix the file."
                              ) from None
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            # A secret's value is never echoed: a URL may carry a password.
            value = "***" if name in _SECRETS else repr(err.get("input"))
            raise ConfigError(
                f"setting {name!r} has a bad value {value}: {err['msg']}. "
                f"Fix the flag, GRISTMILL_{name.upper()}, .env or gristmill.toml."
            ) from None

    @property
    def has_api_tokens(self) -> bool:
        """Whether the API checks tokens at all."""
        return self.api_token is not None or bool(self.api_tokens)

    @property
    def database_path(self) -> Path:
        """The SQLite file holding the catalog and the index (when no ``database_url``)."""
        return self.home / "gristmill.db"

    @property
    def log_path(self) -> Path:
        """Where the full log (with tracebacks) goes."""
        return self.home / "logs" / "gristmill.log"
