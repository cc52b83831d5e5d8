"""Settings: one documented list, one precedence rule.

Precedence, highest first: CLI flags (or keyword arguments to :meth:`Settings.load`) >
``GRISTMILL_*`` environment variables > one env file > ``gristmill.toml`` in the current
directory > ``gristmill.toml`` in the home > the defaults below.

The env file is the first that exists of: ``--env-file`` (``env_file=`` to
:meth:`Settings.load`), the file ``GRISTMILL_ENV_FILE`` names, ``./.env``, the home's
``.env``. Exactly one is read: a second, lower file would make a value's origin a
guess, and ``config show`` and ``doctor`` name the one in force. The home is found
first (flag > env > the env file > ``./gristmill.toml`` > ``./.gristmill``), so that
its ``gristmill.toml`` and ``.env`` can be read; neither of those may move the home.
The current directory's ``gristmill.toml`` stays above the home's so that a folder
that configured gristmill before homes had settings keeps working unchanged.

Paths (``model_path``, ``audio_model``, ``audio_class_map``, ``embed_api_key_file``,
``source_roots``, a folder ``store``) written relative in the home's ``gristmill.toml``
or ``.env`` are relative to the home, so a copied home works at its new path; relative paths from
flags, the environment or files elsewhere are relative to the current directory.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
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

__all__ = ["ENV_FILE_VARIABLE", "ApiToken", "SettingOrigin", "Settings"]

EmbedderName = Literal["minilm", "openai", "bedrock", "none"]
_SECRETS = frozenset({"api_token", "database_url"})
#: The environment variable naming the env file (below ``--env-file``, above ``./.env``).
ENV_FILE_VARIABLE = "GRISTMILL_ENV_FILE"
_ENV_FILE_NAME = ".env"
_TOML_NAME = "gristmill.toml"
_DEFAULT_HOME = Path(".gristmill")
# Settings that name files or folders: relative in the home's files = relative to the home.
_PATH_SETTINGS = frozenset({"model_path", "audio_model", "audio_class_map",
                            "embed_api_key_file", "source_roots", "store"})
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
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )
    # Where each setting came from and which files were read (set by ``load``).
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _files: _Files | None = PrivateAttr(None)

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
    s3_endpoint_url: str | None = Field(
        None, description="`s3://` sources: the S3-compatible endpoint (MinIO, SeaweedFS, "
        "Ceph, R2); default boto3's, from AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or the "
        "profile, else AWS.")
    store: str | None = Field(
        None, description="Keep each ingested original once, named by its sha256 "
        "(`ab/cd/<sha256>`), in an `s3://bucket/prefix/` or a folder (which must exist), "
        "so the knowledge base can be rebuilt or moved without its sources; unset: "
        "originals are not kept.")
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
    # A folder is a Path; a URL prefix stays text (a Path would fold its "//").
    source_roots: Annotated[list[Path | str], NoDecode] = Field(
        default_factory=list,
        description="Folders and URL prefixes (s3://bucket/ or s3://bucket/prefix/) HTTP "
        "API jobs may ingest from (os.pathsep-separated); none = the API accepts no job "
        "source. When set, every run (CLI included) reads nothing outside them, symlinks "
        "included; a URL is read only under a listed prefix, at a / boundary.")
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
    gdrive_credentials_file: Path | None = Field(
        None, description="Google Drive (`gdrive://` roots): a service-account key or an "
        "authorized-user (OAuth) JSON file; its token refreshes itself during long jobs.")
    gdrive_export_format: Literal["office", "pdf"] = Field(
        "office", description="Google Docs, Sheets and Slides are exported as DOCX, XLSX and "
        "PPTX (`office`) or all as PDF (`pdf`).")
    gdrive_page_size: int = Field(
        1000, ge=1, le=1000, description="Google Drive: files per listing or changes page.")
    gdrive_max_retries: int = Field(
        6, ge=0, le=20, description="Google Drive: retries of a request refused for quota "
        "(429, 403 rate limits) or failing with 5xx, with jittered exponential backoff.")
    gdrive_retry_backoff: float = Field(
        1.0, gt=0, le=60, description="Google Drive: the first retry waits up to this many "
        "seconds (doubling each time, up to a minute, never under Retry-After).")
    gdrive_chunk_mb: int = Field(
        10, ge=1, le=1024, description="Google Drive: megabytes per ranged download request.")
    gdrive_timeout: float = Field(
        60.0, gt=0, description="Google Drive: seconds one request may take.")
    gdrive_api_endpoint: str | None = Field(
        None, description="Google Drive API base URL (ending `/drive/v3/`); default Google's. "
        "For a private endpoint or a test server.")
    gdrive_token_uri: str | None = Field(
        None, description="Google OAuth token endpoint; default Google's (or, for a "
        "service account, its key file's `token_uri`).")
    # The OpenAI Vector Store sink (`gristmill sync openai`): gristmill.sinks. Its own
    # URL and key, not the embedder's: a KB may embed locally (or on Azure) and still
    # push to api.openai.com.
    sink_openai_base_url: str = Field(
        "https://api.openai.com/v1", description="`sync openai`: the base URL of the "
        "OpenAI-compatible API its `/files` and `/vector_stores` are under.")
    sink_openai_api_key_env: str = Field(
        "OPENAI_API_KEY", min_length=1, description="`sync openai`: the environment "
        "variable holding the API key; read again whenever the server answers 401.")
    sink_openai_batch_files: int = Field(
        100, ge=1, le=2000, description="`sync openai`: files attached per file batch; "
        "each item's state is recorded once its batch completes.")
    sink_openai_rpm: int = Field(
        0, ge=0, description="`sync openai`: requests per minute at most (0 = no "
        "budget); over it, requests wait.")
    sink_openai_max_retries: int = Field(
        6, ge=0, le=100, description="`sync openai`: retries of a request after 429, "
        "5xx, a timeout or a connection error (exponential backoff with jitter, at least "
        "the server's Retry-After) before the sync stops, resumable.")

    @field_validator("source_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _split_root_list(value)
        if not isinstance(value, list):
            return value
        from gristmill.sources.roots import url_root  # lazily: gristmill.sources imports config

        roots: list[Any] = []
        for root in value:
            if isinstance(root, str) and "://" in root:
                roots.append(url_root(root))  # a ValueError names the setting and value
            else:
                roots.append(Path(root) if isinstance(root, str) else root)
        return roots

    @field_validator("store", mode="before")
    @classmethod
    def _check_store(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str | Path) and not str(value).strip()):
            return None
        text = str(value).strip()
        if "://" in text:
            if not text.lower().startswith("s3://"):
                raise ValueError("give an s3://bucket/prefix/ URL or a folder")
            from gristmill.sources.s3 import parse_url  # lazily: sources import config

            try:
                parse_url(text)
            except Exception as exc:
                raise ValueError(str(exc)) from None
            return text
        # Absolute now: workers may run from another current directory.
        return os.path.abspath(os.path.expanduser(text))

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
        # The files depend on the home, which may come from the flags: found afresh for
        # each construction (load() passes --env-file through _LOADING).
        flags = dict(getattr(init_settings, "init_kwargs", {}))
        loading = _LOADING.get()
        files = _Files.find(flags, loading.env_file if loading else None)
        origins = loading.origins if loading else {}
        if loading is not None:
            loading.files = files
        sources: list[PydanticBaseSettingsSource] = [
            _Traced(init_settings, "flag", origins),
            _Traced(env_settings, "env GRISTMILL_{NAME}", origins,
                    hidden=files.echoed_by_env())]
        if files.env_file is not None:
            dotenv = DotEnvSettingsSource(settings_cls, env_file=files.env_file)
            sources.append(_Traced(dotenv, f"env file {files.env_file}", origins,
                                   files.base_of(files.env_file)))
        for toml in files.tomls:
            try:
                source = TomlConfigSettingsSource(settings_cls, toml_file=toml)
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{toml} is not valid TOML: {exc}. Fix the file."
                                  ) from None
            sources.append(_Traced(source, str(toml), origins, files.base_of(toml)))
        return tuple(sources)

    @classmethod
    def load(cls, *, env_file: str | Path | None = None, **overrides: Any) -> Settings:
        """Build settings from every source; ``None`` overrides are ignored.

        Args:
            env_file: the env file to read (``--env-file``); it must exist. Unset: the
                first of ``GRISTMILL_ENV_FILE``, ``./.env`` and the home's ``.env``.
            **overrides: settings by name, as CLI flags give them.

        Raises:
            ConfigError: naming the first bad setting, its value and where it came from;
                or an env file that was asked for and does not exist.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        with _loading(env_file) as loading:
            try:
                settings = cls(**given)
            except ValidationError as exc:
                err = exc.errors()[0]
                name = ".".join(str(p) for p in err["loc"]) or "settings"
                # A secret's value is never echoed: a URL may carry a password.
                value = "***" if name in _SECRETS else repr(err.get("input"))
                origin = loading.origins.get(str(err["loc"][0]) if err["loc"] else "")
                where = f" (from {origin})" if origin else ""
                raise ConfigError(
                    f"setting {name!r} has a bad value {value}{where}: {err['msg']}. "
                    f"Fix the flag, GRISTMILL_{name.upper()}, the env file or "
                    "gristmill.toml."
                ) from None
        settings._origins = dict(loading.origins)
        settings._files = loading.files
        return settings

    @property
    def env_file(self) -> Path | None:
        """The env file that was read (absolute), or None."""
        return self._files.env_file if self._files else None

    @property
    def env_file_candidates(self) -> tuple[Path, ...]:
        """Where the env file was looked for, in order, up to the one read."""
        return self._files.looked if self._files else ()

    @property
    def toml_files(self) -> tuple[Path, ...]:
        """The ``gristmill.toml`` files that were read, highest first."""
        return self._files.tomls if self._files else ()

    def origin(self, name: str) -> str:
        """Where setting ``name`` came from: ``flag``, ``env GRISTMILL_X``, ``env file
        PATH``, a ``gristmill.toml``'s path, or ``default``."""
        return self._origins.get(name, "default")

    def origins(self) -> list[SettingOrigin]:
        """Every setting with its value (secrets masked) and where it came from, in the
        order the settings are documented."""
        return [SettingOrigin(name, _shown(name, getattr(self, name)), self.origin(name))
                for name in type(self).model_fields]

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


@dataclass(frozen=True, slots=True)
class SettingOrigin:
    """One setting as ``gristmill config show`` prints it.

    Attributes:
        name: the setting (``GRISTMILL_`` + its upper name in the environment).
        value: its value as JSON would hold it, secrets masked (``***``).
        source: ``flag``, ``env GRISTMILL_X``, ``env file PATH``, a toml file's path, or
            ``default``.
    """

    name: str
    value: Any
    source: str

    @property
    def is_default(self) -> bool:
        """Whether no source set it."""
        return self.source == "default"


def _shown(name: str, value: Any) -> Any:
    """``value`` fit to print: JSON types, and no secret."""
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        return _masked_url(secret) if name == "database_url" else "***"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, list):
        return [_shown(name, v) for v in value]
    return value


def _masked_url(url: str) -> str:
    # The user, host and database help a reader; the password never shows.
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# --- which files are read -------------------------------------------------------------


@dataclass(slots=True)
class _Files:
    """The env file and toml files one load reads, and the home they were found by."""

    home: Path
    env_file: Path | None
    looked: tuple[Path, ...]
    tomls: tuple[Path, ...]

    @classmethod
    def find(cls, flags: dict[str, Any], explicit: str | Path | None) -> _Files:
        cwd_toml = _absolute(Path(_TOML_NAME))
        cwd_values = _read_toml(cwd_toml)
        env_file, looked = _find_env_file(explicit, flags, cwd_values)
        home = _home(flags, None, cwd_values)
        if env_file is not None and not _same(env_file.parent, home):
            # The home's own .env cannot move the home: it was found through it.
            home = _home(flags, env_file, cwd_values)
        home_toml = _absolute(home / _TOML_NAME)
        tomls = [t for t in (cwd_toml, home_toml) if t.is_file()]
        if len(tomls) == 2 and _same(*tomls):
            tomls.pop()  # run from inside the home: one file, read once
        return cls(home, env_file, looked, tuple(tomls))

    def echoed_by_env(self) -> frozenset[str]:
        """Settings whose environment variable holds exactly the env file's value: a
        service's ``EnvironmentFile=`` (or a shell's ``set -a; . .env``) copied it
        there. They are credited to the env file, and its relative paths stay
        relative to the home."""
        if self.env_file is None:
            return frozenset()
        from dotenv import dotenv_values

        environ = {k.upper(): v for k, v in os.environ.items()}
        return frozenset(
            name.upper().removeprefix("GRISTMILL_").lower()
            for name, value in dotenv_values(self.env_file).items()
            if name.upper().startswith("GRISTMILL_") and value is not None
            and environ.get(name.upper()) == value)

    def base_of(self, path: Path) -> Path | None:
        """The folder relative paths in ``path`` are relative to: the home for the home's
        own files, else None (the current directory)."""
        return self.home if _same(path.parent, self.home) else None


def _find_env_file(explicit: str | Path | None, flags: dict[str, Any],
                   cwd_values: dict[str, Any]) -> tuple[Path | None, tuple[Path, ...]]:
    if explicit is not None:
        path = _absolute(Path(explicit))
        if not path.is_file():
            raise ConfigError(f"--env-file {path} is not a file: give the path of the "
                              "env file to read, or leave --env-file out")
        return path, (path,)
    named = os.environ.get(ENV_FILE_VARIABLE, "").strip()
    if named:
        path = _absolute(Path(named))
        if not path.is_file():
            raise ConfigError(f"{ENV_FILE_VARIABLE} names {path}, which is not a file: "
                              f"correct it, or unset {ENV_FILE_VARIABLE}")
        return path, (path,)
    # Without a .env yet, the home comes from the flag, the environment or ./gristmill.toml.
    home = _home(flags, None, cwd_values)
    # One entry when run from inside the home.
    looked = tuple(dict.fromkeys((_absolute(Path(_ENV_FILE_NAME)),
                                  _absolute(home / _ENV_FILE_NAME))))
    for path in looked:
        if path.is_file():
            return path, looked[:looked.index(path) + 1]
    return None, looked


def _home(flags: dict[str, Any], env_file: Path | None,
          cwd_values: dict[str, Any]) -> Path:
    """The home as the settings will have it: flag > env > env file > ./gristmill.toml."""
    if flags.get("home") is not None:
        return Path(flags["home"]).expanduser()
    for name, value in os.environ.items():
        if name.upper() == "GRISTMILL_HOME" and value.strip():
            return Path(value).expanduser()
    if env_file is not None:
        from dotenv import dotenv_values

        for name, found in dotenv_values(env_file).items():
            if name.upper() == "GRISTMILL_HOME" and found and found.strip():
                return Path(found).expanduser()
    if isinstance(cwd_values.get("home"), str):
        return Path(cwd_values["home"]).expanduser()
    return _DEFAULT_HOME


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}. Fix the file.") from None
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read ({exc.strerror}): fix its permissions"
                          ) from None


def _absolute(path: Path) -> Path:
    # Without resolving symlinks: the path a person wrote, fit to show and to put in a unit.
    return Path(os.path.abspath(path.expanduser()))


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# --- where each value came from -------------------------------------------------------


@dataclass(slots=True)
class _Loading:
    env_file: str | Path | None
    origins: dict[str, str] = field(default_factory=dict)
    files: _Files | None = None


# Settings.load's arguments that are not settings, handed to settings_customise_sources
# (which pydantic-settings calls with the sources only).
_LOADING: ContextVar[_Loading | None] = ContextVar("gristmill_settings_loading", default=None)


@contextmanager
def _loading(env_file: str | Path | None) -> Iterator[_Loading]:
    loading = _Loading(env_file)
    token = _LOADING.set(loading)
    try:
        yield loading
    finally:
        _LOADING.reset(token)


class _Traced(PydanticBaseSettingsSource):
    """A source that records which settings it gave (the first source to give one is
    the one in force: sources are asked highest first) and, for the home's own files,
    makes relative paths relative to the home."""

    def __init__(self, inner: PydanticBaseSettingsSource, label: str,
                 origins: dict[str, str], base: Path | None = None,
                 hidden: frozenset[str] = frozenset()) -> None:
        super().__init__(inner.settings_cls)
        self._inner, self._label, self._origins, self._base = inner, label, origins, base
        self._hidden = hidden

    def _set_current_state(self, state: dict[str, Any]) -> None:
        super()._set_current_state(state)
        self._inner._set_current_state(state)

    def _set_settings_sources_data(self, states: dict[str, dict[str, Any]]) -> None:
        super()._set_settings_sources_data(states)
        self._inner._set_settings_sources_data(states)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        values = {k: v for k, v in self._inner().items() if k not in self._hidden}
        if self._base is not None:
            values.pop("home", None)  # the home's own files cannot move it
            values = {k: _rebased(k, v, self._base) for k, v in values.items()}
        for name in values:
            self._origins.setdefault(name, self._label.replace("{NAME}", name.upper()))
        return values


# A URL cut after its host ("ftp://host"), and the port that followed it ("2121/docs/").
_AUTHORITY_ONLY = re.compile(r"^[a-z][a-z0-9+.-]*://[^/]+$", re.IGNORECASE)
_PORT = re.compile(r"^[0-9]+(/|$)")


def _split_root_list(text: str) -> list[str]:
    """``source_roots`` as the environment gives it, split at ``os.pathsep``; where that
    is ``:``, a URL prefix's ``scheme`` and ``//rest`` are joined again, and so are its
    host and port (``ftp://host:2121/docs/``)."""
    parts: list[str] = []
    for part in text.split(os.pathsep):
        if os.pathsep == ":" and parts and _continues_url(parts[-1], part):
            parts[-1] += ":" + part
        else:
            parts.append(part)
    return [part for part in parts if part.strip()]


def _continues_url(before: str, part: str) -> bool:
    """Whether ``part`` is the rest of a URL cut at one of its own colons: after its
    scheme (``//host/...``), or after its host (a port)."""
    if part.startswith("//"):
        return before.isascii() and before.isalnum()
    return _PORT.match(part) is not None and _AUTHORITY_ONLY.match(before) is not None


def _rebased(name: str, value: Any, base: Path) -> Any:
    if name not in _PATH_SETTINGS or value is None:
        return value
    if isinstance(value, str) and name == "source_roots":  # as the environment gives it
        return os.pathsep.join(_under(part, base) for part in _split_root_list(value))
    if isinstance(value, list):
        return [_under(part, base) for part in value]
    return _under(value, base)


def _under(value: Any, base: Path) -> Any:
    if not isinstance(value, (str, Path)) or not str(value).strip() or "://" in str(value):
        return value  # a URL (a source_roots prefix) is relative to nothing
    path = Path(value)
    if path.is_absolute() or str(value).startswith("~"):
        return value
    return str(base / path)
