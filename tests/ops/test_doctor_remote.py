"""``gristmill doctor`` on remote sources (issue 17): ``s3://`` roots against a real
SeaweedFS on loopback (credentials, endpoint, bucket), ``gdrive://`` roots by their
credentials file alone (offline: nothing is sent to Google).

The SeaweedFS of this module is started with credentials in its environment, which turns
its S3 authentication on (as its admin identity), so that wrong credentials are refused
as a real store refuses them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gristmill.config import Settings
from gristmill.ops.doctor import Check, run_checks
from process_tools import env_for, gristmill
from sources.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, running_seaweed

_AWS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS",
        "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE")


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the module, refusing any credentials but the suite's."""
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs"), authenticate=True) as server:
        yield server


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No GRISTMILL_* settings but the test's database, no AWS settings of this machine
    (no profile files, no instance-role lookup), no unit files of its user."""
    for name in list(os.environ):
        if name.startswith("GRISTMILL_") and name != "GRISTMILL_DATABASE_URL":
            monkeypatch.delenv(name)
    for name in _AWS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture
def aws(seaweed: SeaweedFS, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> SeaweedFS:
    """The suite's credentials and the server's endpoint, set the standard AWS way."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    return seaweed


def _bucket(server: SeaweedFS) -> str:
    """A fresh bucket holding one object under ``docs/``."""
    name = f"gm-{uuid.uuid4().hex[:12]}"
    client = server.client()
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="docs/ledger.txt", Body=b"every sack of barley")
    return name


def _found(tmp_path: Path, name: str, **settings: Any) -> list[Check]:
    """The checks named ``name``, for a home under ``tmp_path``."""
    loaded = Settings.load(home=tmp_path / "home", embedder="none", **settings)
    return [check for check in run_checks(loaded) if check.name == name]


# -- s3:// ------------------------------------------------------------------------------


def test_a_readable_bucket_passes(tmp_path: Path, aws: SeaweedFS) -> None:
    """Credentials found, endpoint answering, the prefix listable: one ok line naming
    the endpoint and where the credentials came from."""
    bucket = _bucket(aws)
    roots = [f"s3://{bucket}/docs/", f"s3://{bucket}/"]
    [found] = _found(tmp_path, "s3", source_roots=roots)
    assert found.level == "ok", found.detail
    assert found.detail.startswith(", ".join(roots)) and aws.endpoint in found.detail
    assert found.facts["credentials"] == "env" and found.facts["roots"] == roots


def test_a_missing_bucket_is_an_error(tmp_path: Path, aws: SeaweedFS) -> None:
    """A configured root whose bucket is not there: an error saying to check the name
    and the endpoint; the roots that are fine still get their ok line."""
    bucket = _bucket(aws)
    missing = f"s3://gm-missing-{uuid.uuid4().hex[:8]}/"
    found = _found(tmp_path, "s3", source_roots=[f"s3://{bucket}/docs/", missing])
    assert [c.level for c in found] == ["error", "ok"], found
    assert found[0].detail.startswith(f"cannot list {missing}: there is no bucket")
    assert "s3_endpoint_url" in found[0].detail and found[0].facts["root"] == missing


@pytest.mark.parametrize(("variable", "value"), [("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
                                                 ("AWS_ACCESS_KEY_ID", "nobody-knows-me")])
def test_wrong_credentials_are_an_error(tmp_path: Path, aws: SeaweedFS,
                                        monkeypatch: pytest.MonkeyPatch, variable: str,
                                        value: str) -> None:
    """Credentials the store refuses: access denied, with the settings to check."""
    bucket = _bucket(aws)
    monkeypatch.setenv(variable, value)
    [found] = _found(tmp_path, "s3", source_roots=[f"s3://{bucket}/docs/"])
    assert found.level == "error"
    assert "access denied" in found.detail and "AWS_ACCESS_KEY_ID" in found.detail


def test_no_credentials_names_the_ways_to_give_them(tmp_path: Path, clean_env: Path) -> None:
    """boto3's chain finds nothing: one error naming the environment, a profile and an
    instance role; no request is made."""
    roots = ["s3://bucket-one/docs/", "s3://bucket-two/"]
    [found] = _found(tmp_path, "s3", source_roots=roots,
                     s3_endpoint_url="http://127.0.0.1:9")
    assert found.level == "error"
    assert found.detail.startswith(f"no AWS credentials to read {', '.join(roots)}")
    for fix in ("AWS_ACCESS_KEY_ID", "AWS_PROFILE", "instance role"):
        assert fix in found.detail


def test_a_missing_profile_is_a_credentials_error(tmp_path: Path, clean_env: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_PROFILE naming a profile the config lacks: one error naming the fix."""
    monkeypatch.setenv("AWS_PROFILE", "gone-with-the-move")
    [found] = _found(tmp_path, "s3", source_roots=["s3://bucket/docs/"])
    assert found.level == "error"
    assert found.detail.startswith("the AWS credentials for s3://bucket/docs/ cannot be "
                                   "loaded: The config profile (gone-with-the-move)")
    assert "AWS_PROFILE" in found.detail


@pytest.mark.timeout(90)
def test_a_stopped_server_is_unreachable(tmp_path: Path, clean_env: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The endpoint (here the s3_endpoint_url setting) down: each root says the endpoint
    is unreachable and what to do, and doctor returns (short timeouts, no retries)."""
    with running_seaweed(tmp_path / "seaweedfs") as server:
        bucket = _bucket(server)
        server.stop()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        roots = [f"s3://{bucket}/docs/", f"s3://{bucket}/other/"]
        found = _found(tmp_path, "s3", source_roots=roots, s3_endpoint_url=server.endpoint)
    assert [c.level for c in found] == ["error", "error"], found
    for check, root in zip(found, roots, strict=True):
        assert check.detail.startswith(f"cannot list {root}: the S3 endpoint "
                                       f"{server.endpoint} is unreachable")
        assert "s3_endpoint_url" in check.detail


@pytest.mark.timeout(60)
def test_an_endpoint_that_never_answers_is_unreachable(tmp_path: Path, aws: SeaweedFS) -> None:
    """An endpoint that accepts connections and never answers (a hung proxy): doctor
    gives up after its short read timeout, without retrying, and says so."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        [found] = _found(tmp_path, "s3", source_roots=["s3://bucket/docs/"],
                         s3_endpoint_url=endpoint)
    assert found.level == "error"
    assert f"the S3 endpoint {endpoint} is unreachable (connected, but no answer within" \
        in found.detail


def test_a_url_gristmill_does_not_read_is_an_error(tmp_path: Path, clean_env: Path) -> None:
    """A source root of a scheme no filesystem reads: an error naming the sources
    gristmill reads."""
    [found] = _found(tmp_path, "fsspec", source_roots=["nosuch://files.example/docs/"])
    assert found.level == "error" and "not a source gristmill reads" in found.detail


def test_an_ftp_root_is_looked_up(tmp_path: Path, clean_env: Path) -> None:
    """An ftp:// root (fsspec) is ok while its server answers, and an error once the
    server is gone; the password is never shown."""
    from sources.ftp_server import PASSWORD, running_ftp

    docs = tmp_path / "served" / "docs"
    docs.mkdir(parents=True)
    (docs / "a.txt").write_text("hello")
    with running_ftp(tmp_path / "served") as server:
        url = f"{server.url}/docs/"
        [found] = _found(tmp_path, "fsspec", source_roots=[url])
        assert found.level == "ok", found.detail
        assert PASSWORD not in found.detail
    [found] = _found(tmp_path, "fsspec", source_roots=[url])
    assert found.level == "error" and PASSWORD not in found.detail


def test_without_boto3_the_extra_is_named(tmp_path: Path, clean_env: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3 not installed: an error with the install command."""
    monkeypatch.setitem(sys.modules, "boto3", None)  # what Python does for a missing one
    [found] = _found(tmp_path, "s3", source_roots=["s3://bucket/docs/"])
    assert found.level == "error"
    assert found.detail == ("boto3 is not installed, which reading s3://bucket/docs/ "
                            "needs: pip install 'gristmill[s3]'")


def test_the_buckets_jobs_read_are_checked(tmp_path: Path, aws: SeaweedFS) -> None:
    """A prefix this knowledge base's jobs ingested (no source_roots): ok while it can be
    listed; a warning, not an error, once its bucket is gone (what a move leaves
    behind)."""
    from gristmill.knowledge_base import KnowledgeBase

    bucket = _bucket(aws)
    root = f"s3://{bucket}/docs/"
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1) as kb:
        assert kb.ingest([root]).failed == 0
    [found] = _found(tmp_path, "s3")
    assert found.level == "ok" and found.facts["roots"] == [root]
    client = aws.client()
    client.delete_object(Bucket=bucket, Key="docs/ledger.txt")
    client.delete_bucket(Bucket=bucket)
    [gone] = _found(tmp_path, "s3")
    assert gone.level == "warning" and "there is no bucket" in gone.detail


def test_cli_exits_1_for_a_missing_bucket(tmp_path: Path, aws: SeaweedFS) -> None:
    """`gristmill doctor --json` with a source root whose bucket is missing: exit 1, the
    s3 finding in the JSON with its root and endpoint."""
    missing = f"s3://gm-missing-{uuid.uuid4().hex[:8]}/docs/"
    env = {**env_for(tmp_path / "home", source_roots=missing), "PATH": str(tmp_path / "none")}
    done = gristmill("doctor", "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    [found] = [c for c in json.loads(done.stdout) if c["name"] == "s3"]
    assert found["level"] == "error" and found["facts"]["root"] == missing
    assert found["facts"]["endpoint"] == aws.endpoint


# -- gdrive:// --------------------------------------------------------------------------

ROOT = "gdrive://1AbCdEfGhIjKlMnOp"


def _service_account(path: Path, *, key: str | None = None) -> Path:
    """A service-account key file with a freshly generated RSA key (or ``key``)."""
    if key is None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key = private.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "p", "private_key_id": "k1",
        "private_key": key, "client_email": "robot@p.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}))
    path.chmod(0o600)
    return path


def _drive(tmp_path: Path, credentials: Path | None, **settings: Any) -> list[Check]:
    return _found(tmp_path, "gdrive", source_roots=[ROOT], gdrive_credentials_file=credentials,
                  **settings)


@contextmanager
def _unprivileged() -> Iterator[None]:
    """File permissions as an ordinary user sees them: as root, the block runs with the
    effective user ``nobody`` (root reads any file)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_good_drive_credentials_pass(tmp_path: Path, clean_env: Path) -> None:
    """A service-account key (mode 600) or an authorized-user file loads: ok, naming
    the account, without a call to Google."""
    robot = _service_account(tmp_path / "robot.json")
    [found] = _drive(tmp_path, robot)
    assert found.level == "ok", found.detail
    assert "service account robot@p.iam.gserviceaccount.com" in found.detail
    assert found.facts == {"credentials_file": str(robot), "kind": "service_account"}
    user = tmp_path / "user.json"
    user.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                                "client_secret": "s", "refresh_token": "r"}))
    user.chmod(0o600)
    [found] = _drive(tmp_path, user)
    assert found.level == "ok" and "authorized user (OAuth client c)" in found.detail


def test_drive_credentials_not_set(tmp_path: Path, clean_env: Path) -> None:
    """A gdrive:// root and no gdrive_credentials_file: an error naming the setting; a
    root that names no single folder is one too."""
    found = _found(tmp_path, "gdrive", source_roots=[ROOT, "gdrive://a/b/"])
    assert [c.level for c in found] == ["error", "error"], found
    assert "names no single folder" in found[0].detail
    assert found[1].detail.startswith(f"no Google credentials to read {ROOT}/, gdrive://a/b/")
    assert "GRISTMILL_GDRIVE_CREDENTIALS_FILE" in found[1].detail


def test_drive_credentials_missing(tmp_path: Path, clean_env: Path) -> None:
    """A credentials file that is not there: an error naming it and the setting."""
    [found] = _drive(tmp_path, tmp_path / "gone.json")
    assert found.level == "error"
    assert found.detail.startswith(f"cannot read Google credentials {tmp_path / 'gone.json'}")
    assert "gdrive_credentials_file" in found.detail


def test_drive_credentials_unreadable(tmp_path: Path, clean_env: Path) -> None:
    """A credentials file this user may not read (mode 000), or a folder: an error."""
    # A folder anyone may enter (pytest's own are root's alone), so that only the file
    # itself is out of reach.
    shared = Path(tempfile.mkdtemp(prefix="gm-doctor-"))
    try:
        shared.chmod(0o755)
        robot = _service_account(shared / "robot.json")
        robot.chmod(0o000)
        settings = Settings.load(home=shared / "home", embedder="none",
                                 source_roots=[ROOT], gdrive_credentials_file=robot)
        with _unprivileged():
            found = [c for c in run_checks(settings) if c.name == "gdrive"]
    finally:
        shutil.rmtree(shared)
    assert [c.level for c in found] == ["error"], found
    assert f"cannot read Google credentials {robot}" in found[0].detail
    assert "Permission denied" in found[0].detail
    [folder] = _drive(tmp_path, tmp_path)
    assert folder.level == "error" and f"{tmp_path} is not a file" in folder.detail


@pytest.mark.parametrize(("text", "said"), [
    ("{not json", "cannot read Google credentials"),
    ('{"type": "external_account"}', "of type 'external_account'"),
    ('{"type": "authorized_user", "client_id": "c"}', "are incomplete"),
    (None, "are incomplete"),  # a service account whose private key is not one
])
def test_malformed_drive_credentials(tmp_path: Path, clean_env: Path, text: str | None,
                                     said: str) -> None:
    """Not JSON, another kind, fields missing, a broken key: an error saying so."""
    path = tmp_path / "creds.json"
    if text is None:
        _service_account(path, key="-----BEGIN PRIVATE KEY-----\nbroken\n")
    else:
        path.write_text(text)
        path.chmod(0o600)
    [found] = _drive(tmp_path, path)
    assert found.level == "error" and said in found.detail, found.detail
    assert "gdrive_credentials_file" in found.detail


def test_drive_credentials_others_can_read_are_a_warning(tmp_path: Path,
                                                         clean_env: Path) -> None:
    """A key readable by the group or everyone: a warning with the chmod."""
    robot = _service_account(tmp_path / "robot.json")
    robot.chmod(0o644)
    [found] = _drive(tmp_path, robot)
    assert found.level == "warning"
    assert "(mode 0644)" in found.detail and f"chmod 600 {robot}" in found.detail


def test_without_the_drive_client_the_extra_is_named(tmp_path: Path, clean_env: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """google-api-python-client not installed: an error with the install command."""
    # None is what Python leaves for a missing module; its submodules imported earlier
    # would be found by their own names.
    for name in [*(n for n in sys.modules if n.startswith("googleapiclient.")),
                 "googleapiclient"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "gristmill.sources.gdrive", raising=False)
    robot = _service_account(tmp_path / "robot.json")
    [found] = _drive(tmp_path, robot)
    assert found.level == "error" and "pip install 'gristmill[gdrive]'" in found.detail


def test_a_home_behind_a_folder_the_user_cannot_enter_is_an_error(tmp_path: Path) -> None:
    """Doctor reports a database it cannot even look at (a folder above it without x
    permission) as one error line, instead of crashing on the stat."""
    from gristmill.ops.doctor import run_checks

    locked = tmp_path / "locked"
    (locked / "home").mkdir(parents=True)
    settings = Settings.load(home=locked / "home", embedder="none")
    os.chmod(tmp_path, 0o755)
    run_checks(settings)  # as root first: imports its checks load lazily, and nobody
    locked.chmod(0o700)  # cannot read root's pyenv; root's own folder: nobody cannot enter
    with _unprivileged():
        checks = run_checks(settings)
    [home] = [c for c in checks if c.name == "home"]
    assert home.level == "error" and "cannot be entered" in home.detail
    if settings.database_url is None:  # on PostgreSQL the catalog is not in the home
        [sqlite] = [c for c in checks if c.name == "sqlite"]
        assert sqlite.level == "error" and "permission" in sqlite.detail.lower()


# -- the store of originals ---------------------------------------------------------------


def test_a_store_folder_must_exist_and_be_writable(tmp_path: Path, clean_env: Path) -> None:
    """A store folder that is missing (an unmounted share) is an error; once there, ok
    with its free space; one the user cannot write to is an error again."""
    store = tmp_path / "originals"
    [found] = _found(tmp_path, "store", store=str(store))
    assert found.level == "error" and "does not exist" in found.detail
    store.mkdir()
    [found] = _found(tmp_path, "store", store=str(store))
    assert found.level == "ok" and str(store) in found.detail
    # Under /tmp itself: pytest's own folders are root's alone, and nobody must reach it.
    shared = Path(tempfile.mkdtemp(prefix="gristmill-doctor-"))
    try:
        shared.chmod(0o755)
        (shared / "originals").mkdir(mode=0o555)
        settings = Settings.load(home=tmp_path / "home", embedder="none",
                                 store=str(shared / "originals"))
        with _unprivileged():  # as root, every folder is writable
            [found] = [check for check in run_checks(settings) if check.name == "store"]
    finally:
        shutil.rmtree(shared)
    assert found.level == "error" and "cannot write" in found.detail


def test_an_s3_store_is_checked_like_a_bucket(tmp_path: Path, aws: SeaweedFS) -> None:
    """An s3:// store: ok where its bucket lists, an error naming the store where the
    bucket is missing."""
    bucket = _bucket(aws)
    [found] = _found(tmp_path, "store", store=f"s3://{bucket}/objects/")
    assert found.level == "ok", found.detail
    [found] = _found(tmp_path, "store", store=f"s3://{bucket}-gone/objects/")
    assert found.level == "error" and found.detail.startswith("store ")
    assert f"there is no bucket '{bucket}-gone'" in found.detail
    assert not _found(tmp_path, "store")  # no store set: no line
