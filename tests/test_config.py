"""Settings: one precedence rule (flag > env > .env > gristmill.toml > default), clear errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gristmill.config import Settings
from gristmill.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty folder with no GRISTMILL_* variables inherited."""
    for name in list(os.environ):
        if name.startswith("GRISTMILL_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write_toml(text: str) -> None:
    Path("gristmill.toml").write_text(text, encoding="utf-8")


def write_dotenv(text: str) -> None:
    Path(".env").write_text(text, encoding="utf-8")


def test_defaults_apply_when_nothing_is_configured() -> None:
    """With no flags, env, .env or toml, the documented defaults are used."""
    settings = Settings.load()
    assert settings.home == Path(".gristmill")
    assert settings.embedder == "minilm"
    assert settings.model_path is None
    assert settings.chunk_tokens == 200
    assert settings.workers >= 1
    assert settings.database_path == Path(".gristmill") / "gristmill.db"


def test_toml_overrides_default() -> None:
    """A value in ./gristmill.toml replaces the default."""
    write_toml('workers = 5\nembedder = "none"\n')
    settings = Settings.load()
    assert settings.workers == 5
    assert settings.embedder == "none"


def test_dotenv_overrides_toml() -> None:
    """A GRISTMILL_* line in ./.env wins over gristmill.toml."""
    write_toml("workers = 5\n")
    write_dotenv("GRISTMILL_WORKERS=3\n")
    assert Settings.load().workers == 3


def test_environment_overrides_dotenv(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRISTMILL_* environment variable wins over .env and gristmill.toml."""
    write_toml("workers = 5\n")
    write_dotenv("GRISTMILL_WORKERS=3\n")
    monkeypatch.setenv("GRISTMILL_WORKERS", "2")
    assert Settings.load().workers == 2


def test_flag_overrides_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flag (keyword argument to Settings.load) wins over every other source."""
    write_toml("workers = 5\n")
    write_dotenv("GRISTMILL_WORKERS=3\n")
    monkeypatch.setenv("GRISTMILL_WORKERS", "2")
    assert Settings.load(workers=9).workers == 9


def test_flag_left_as_none_falls_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset flag (None) does not hide the value from env or files."""
    monkeypatch.setenv("GRISTMILL_WORKERS", "2")
    assert Settings.load(workers=None).workers == 2


def test_sources_combine_per_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each setting is taken from the highest source that sets it, independently."""
    write_toml('workers = 5\nchunk_tokens = 100\nembedder = "none"\n')
    write_dotenv("GRISTMILL_CHUNK_TOKENS=120\n")
    monkeypatch.setenv("GRISTMILL_HOME", "/tmp/kb")
    settings = Settings.load()
    assert (settings.workers, settings.chunk_tokens, settings.embedder) == (5, 120, "none")
    assert settings.home == Path("/tmp/kb")


def test_window_defaults_to_four_times_workers() -> None:
    """Without a window setting, at most 4 x workers items are in flight."""
    assert Settings.load(workers=3).window == 12


def test_window_default_follows_workers_from_any_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default window tracks workers wherever workers came from (here the env)."""
    monkeypatch.setenv("GRISTMILL_WORKERS", "6")
    assert Settings.load().window == 24


def test_explicit_window_is_kept() -> None:
    """A window that is set is used as is, not recomputed from workers."""
    write_toml("window = 7\n")
    assert Settings.load(workers=3).window == 7


@pytest.mark.parametrize(
    ("overrides", "setting", "value"),
    [
        ({"workers": 0}, "workers", "0"),
        ({"embedder": "bert"}, "embedder", "'bert'"),
        ({"chunk_tokens": 5}, "chunk_tokens", "5"),
        ({"window": 0}, "window", "0"),
        ({"lease_seconds": 0.5}, "lease_seconds", "0.5"),
        ({"log_level": "LOUD"}, "log_level", "'LOUD'"),
    ],
)
def test_bad_flag_raises_config_error_naming_setting_and_value(
    overrides: dict[str, object], setting: str, value: str
) -> None:
    """A bad flag value raises ConfigError that names the setting and the bad value."""
    with pytest.raises(ConfigError) as caught:
        Settings.load(**overrides)
    message = str(caught.value)
    assert repr(setting) in message
    assert value in message
    assert f"GRISTMILL_{setting.upper()}" in message


def test_bad_environment_value_raises_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unparsable GRISTMILL_* value raises ConfigError with the setting and the text."""
    monkeypatch.setenv("GRISTMILL_WORKERS", "many")
    with pytest.raises(ConfigError, match=r"'workers'.*'many'"):
        Settings.load()


def test_bad_toml_value_raises_config_error() -> None:
    """An out-of-range value in gristmill.toml raises ConfigError, not a pydantic error."""
    write_toml("max_attempts = 0\n")
    with pytest.raises(ConfigError, match=r"'max_attempts'.*0"):
        Settings.load()


def test_bad_dotenv_value_raises_config_error() -> None:
    """A bad value in .env raises ConfigError naming the setting."""
    write_dotenv("GRISTMILL_EMBEDDER=word2vec\n")
    with pytest.raises(ConfigError, match=r"'embedder'.*'word2vec'"):
        Settings.load()


def test_malformed_toml_raises_config_error() -> None:
    """A gristmill.toml that is not valid TOML raises ConfigError, not a parser error."""
    write_toml("workers = \n")
    with pytest.raises(ConfigError, match=r"gristmill\.toml"):
        Settings.load()


def test_unrelated_keys_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown keys in the toml, .env or env do not stop gristmill from starting."""
    write_toml("colour = 'blue'\n")
    write_dotenv("OTHER_TOOL_TOKEN=x\n")
    monkeypatch.setenv("GRISTMILL_NOT_A_SETTING", "1")
    assert Settings.load().embedder == "minilm"


def test_database_url_selects_postgresql_with_the_usual_precedence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No URL: the SQLite file; a URL from the toml, the environment or a flag (the flag
    winning) selects PostgreSQL, with a pool of 3 connections unless set."""
    assert Settings.load().database_url is None
    write_toml('database_url = "postgresql://toml@db/kb"\npool_size = 5\n')
    monkeypatch.setenv("GRISTMILL_DATABASE_URL", "postgresql://env@db/kb")
    settings = Settings.load(database_url="postgres://flag@db/kb")
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgres://flag@db/kb"
    assert settings.pool_size == 5
    assert Settings.load().database_url.get_secret_value() == "postgresql://env@db/kb"
    monkeypatch.setenv("GRISTMILL_DATABASE_URL", "")  # set but blank: SQLite again
    Path("gristmill.toml").unlink()
    assert Settings.load().database_url is None
    assert Settings.load().pool_size == 3


def test_a_bad_database_url_is_refused_without_echoing_it() -> None:
    """Only postgresql:// URLs are accepted, and the error never prints the value (it
    may hold a password)."""
    with pytest.raises(ConfigError, match="database_url") as caught:
        Settings.load(database_url="mysql://root:hunter2@db/kb")
    assert "hunter2" not in str(caught.value)
    assert "postgresql://" in str(caught.value)
    assert "hunter2" not in repr(Settings.load(database_url="postgresql://u:hunter2@db/kb"))
