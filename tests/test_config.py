"""Settings: one precedence rule (flag > env > .env > gristmill.toml > default), clear errors."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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


# -- config that survives a move: the env file, the home's files, provenance ------------


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_env_file_search_order_and_only_one_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--env-file, then GRISTMILL_ENV_FILE, then ./.env, then the home's .env: the first
    that exists is the one read, and a setting only a lower file has is not read."""
    home = tmp_path / "home"
    write(home / ".env", "GRISTMILL_WORKERS=4\nGRISTMILL_CHUNK_TOKENS=64\n")
    monkeypatch.setenv("GRISTMILL_HOME", str(home))
    settings = Settings.load()
    assert settings.env_file == home / ".env"
    assert (settings.workers, settings.chunk_tokens) == (4, 64)
    write_dotenv("GRISTMILL_WORKERS=3\n")
    settings = Settings.load()
    assert settings.env_file == tmp_path / ".env"
    assert (settings.workers, settings.chunk_tokens) == (3, 200)  # home .env unread
    named = write(tmp_path / "etc" / "gm.env", "GRISTMILL_WORKERS=2\n")
    monkeypatch.setenv("GRISTMILL_ENV_FILE", str(named))
    assert (Settings.load().workers, Settings.load().env_file) == (2, named)
    flag = write(tmp_path / "flag.env", "GRISTMILL_WORKERS=1\n")
    assert Settings.load(env_file=flag).workers == 1
    assert Settings.load(env_file=flag).env_file_candidates == (flag,)


def test_no_env_file_says_where_it_looked(tmp_path: Path) -> None:
    """With none, the candidates are ./.env and the home's .env, in that order."""
    settings = Settings.load(home=tmp_path / "kb")
    assert settings.env_file is None
    assert settings.env_file_candidates == (tmp_path / ".env", tmp_path / "kb" / ".env")


def test_an_env_file_asked_for_must_exist(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing --env-file or GRISTMILL_ENV_FILE is an error naming it, not ignored (a
    move that lost the file must not run on defaults)."""
    with pytest.raises(ConfigError, match=r"--env-file .*gone\.env is not a file"):
        Settings.load(env_file=tmp_path / "gone.env")
    monkeypatch.setenv("GRISTMILL_ENV_FILE", str(tmp_path / "lost.env"))
    with pytest.raises(ConfigError, match=r"GRISTMILL_ENV_FILE names .*lost\.env"):
        Settings.load()


def test_home_toml_is_read_below_the_current_folders(tmp_path: Path) -> None:
    """HOME/gristmill.toml is read; ./gristmill.toml wins over it; the env file over both."""
    home = tmp_path / "kb"
    write(home / "gristmill.toml", "workers = 5\nchunk_tokens = 100\nmax_attempts = 7\n")
    assert (Settings.load(home=home).workers, Settings.load(home=home).max_attempts) == (5, 7)
    write_toml("chunk_tokens = 120\n")
    write_dotenv("GRISTMILL_MAX_ATTEMPTS=2\n")
    settings = Settings.load(home=home)
    assert (settings.workers, settings.chunk_tokens, settings.max_attempts) == (5, 120, 2)
    assert settings.toml_files == (tmp_path / "gristmill.toml", home / "gristmill.toml")


def test_the_env_file_can_name_the_home(tmp_path: Path) -> None:
    """GRISTMILL_HOME in the env file picks the home whose gristmill.toml is read."""
    home = tmp_path / "elsewhere"
    write(home / "gristmill.toml", "workers = 6\n")
    env_file = write(tmp_path / "conf" / "gm.env", f"GRISTMILL_HOME={home}\n")
    settings = Settings.load(env_file=env_file)
    assert (settings.home, settings.workers) == (home, 6)


def test_a_copied_home_finds_its_files_at_its_new_path(tmp_path: Path) -> None:
    """Relative paths in the home's gristmill.toml and .env are relative to the home, so
    a home copied elsewhere (with its model files) works there unchanged."""
    old = tmp_path / "old"
    write(old / "models" / "laugh.onnx", "model")
    write(old / "gristmill.toml", 'audio_model = "models/laugh.onnx"\n'
          'source_roots = ["docs", "/srv/shared"]\n')
    write(old / ".env", "GRISTMILL_MODEL_PATH=models/minilm.onnx\n")
    new = tmp_path / "new" / "place"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    settings = Settings.load(home=new)
    assert settings.audio_model == new / "models" / "laugh.onnx"
    assert settings.audio_model.is_file()
    assert settings.model_path == new / "models" / "minilm.onnx"
    assert settings.source_roots == [new / "docs", Path("/srv/shared")]
    assert settings.origin("audio_model") == str(new / "gristmill.toml")


def test_relative_paths_elsewhere_stay_relative_to_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Paths from flags, the environment, ./.env and ./gristmill.toml mean what they
    always meant: relative to where gristmill runs."""
    write_toml('audio_model = "m/a.onnx"\n')
    write_dotenv("GRISTMILL_MODEL_PATH=m/b.onnx\n")
    monkeypatch.setenv("GRISTMILL_AUDIO_CLASS_MAP", "m/c.csv")
    settings = Settings.load(home=tmp_path / "kb")
    assert settings.audio_model == Path("m/a.onnx")
    assert settings.model_path == Path("m/b.onnx")
    assert settings.audio_class_map == Path("m/c.csv")


def test_each_setting_names_its_source(tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """flag, env GRISTMILL_X, env file PATH, the toml's path, default: per setting."""
    home = tmp_path / "kb"
    write(home / "gristmill.toml", "max_attempts = 7\n")
    write_toml("chunk_tokens = 120\n")
    write_dotenv("GRISTMILL_FLUSH_OPS=50\n")
    monkeypatch.setenv("GRISTMILL_WORKERS", "2")
    settings = Settings.load(home=home, embedder="none")
    assert settings.origin("home") == "flag"
    assert settings.origin("embedder") == "flag"
    assert settings.origin("workers") == "env GRISTMILL_WORKERS"
    assert settings.origin("flush_ops") == f"env file {tmp_path / '.env'}"
    assert settings.origin("chunk_tokens") == str(tmp_path / "gristmill.toml")
    assert settings.origin("max_attempts") == str(home / "gristmill.toml")
    assert settings.origin("ocr_lang") == "default"
    shown = {o.name: o for o in settings.origins()}
    assert list(shown) == list(Settings.model_fields)
    assert shown["flush_ops"].value == 50 and not shown["flush_ops"].is_default
    assert shown["ocr_lang"].is_default


def test_variables_copied_from_the_env_file_are_credited_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A service's EnvironmentFile= puts the env file's lines in the environment: those
    still count as the env file's, and its relative paths stay relative to the home."""
    home = tmp_path / "kb"
    env_file = write(home / ".env", "GRISTMILL_AUDIO_MODEL=models/a.onnx\n"
                     "GRISTMILL_WORKERS=3\n")
    monkeypatch.setenv("GRISTMILL_AUDIO_MODEL", "models/a.onnx")
    monkeypatch.setenv("GRISTMILL_WORKERS", "5")  # differs: the environment's own
    settings = Settings.load(home=home)
    assert settings.audio_model == home / "models" / "a.onnx"
    assert settings.origin("audio_model") == f"env file {env_file}"
    assert (settings.workers, settings.origin("workers")) == (5, "env GRISTMILL_WORKERS")


def test_secrets_are_masked(tmp_path: Path) -> None:
    """database_url's password and api_token never show; the rest of the URL does."""
    settings = Settings.load(database_url="postgresql://ann:hunter2@db:5432/kb",
                             api_token="s3cret-token")
    shown = {o.name: o.value for o in settings.origins()}
    assert shown["database_url"] == "postgresql://ann:***@db:5432/kb"
    assert shown["api_token"] == "***"
    assert "hunter2" not in repr(settings.origins())
    assert "s3cret" not in repr(settings.origins())


def test_a_bad_value_says_where_it_came_from(tmp_path: Path) -> None:
    """The error names the file holding the bad value."""
    home = tmp_path / "kb"
    write(home / "gristmill.toml", "max_attempts = 0\n")
    with pytest.raises(ConfigError, match=r"from .*kb/gristmill\.toml"):
        Settings.load(home=home)


def test_config_show_prints_values_and_sources(tmp_path: Path) -> None:
    """`gristmill config show --json`: the env file, the toml files, and every setting
    with its source; secrets masked; `--env-file` chooses the file."""
    home = tmp_path / "kb"
    write(home / "gristmill.toml", "max_attempts = 7\n")
    env_file = write(tmp_path / "gm.env", "GRISTMILL_DATABASE_URL=postgresql://u:pw@db/kb\n"
                     "GRISTMILL_WORKERS=3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    done = subprocess.run([sys.executable, "-m", "gristmill", "config", "show", "--json",
                           "--home", str(home), "--env-file", str(env_file)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["env_file"] == str(env_file)
    assert shown["toml_files"] == [str(home / "gristmill.toml")]
    settings = {s["name"]: s for s in shown["settings"]}
    assert settings["workers"] == {"name": "workers", "value": 3,
                                   "source": f"env file {env_file}"}
    assert settings["database_url"]["value"] == "postgresql://u:***@db/kb"
    assert settings["max_attempts"]["source"] == str(home / "gristmill.toml")
    assert settings["home"]["source"] == "flag"
    assert "pw@" not in done.stdout
    text = subprocess.run([sys.executable, "-m", "gristmill", "config", "show", "--changed",
                           "--home", str(home), "--env-file", str(env_file)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert f"# env file: {env_file}" in text.stdout
    assert re.search(rf"^workers +\= 3  # env file {re.escape(str(env_file))}$", text.stdout,
                     re.MULTILINE), text.stdout
    assert "ocr_lang" not in text.stdout  # --changed: defaults left out
