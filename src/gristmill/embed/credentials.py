"""Where a remote embedder's API key comes from, fetched again when the server refuses it.

A job of several hours outlives a key: keys rotate, short-lived tokens expire. So the
key is not read once at start but kept by an :class:`ApiKey` that reads it again (the
file, the environment variable) or runs its command again whenever the server answers
401, and otherwise serves the cached value.
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

from gristmill.errors import CredentialError

__all__ = ["ApiKey"]

# A token command that has not printed within this long is stuck (waiting for a login
# prompt nobody will answer); the job pauses rather than hanging on it.
_COMMAND_TIMEOUT = 60.0


class ApiKey:
    """An API key from a command, a file or an environment variable (the first given).

    With none of them holding a key the requests go without one (a local Ollama or
    vLLM needs none).

    Args:
        env: the environment variable holding the key.
        file: a file holding the key (surrounding whitespace ignored).
        command: a shell command whose standard output is the key.
    """

    def __init__(self, env: str | None = "OPENAI_API_KEY", file: Path | None = None,
                 command: str | None = None) -> None:
        self._env = env
        self._file = file
        self._command = command
        self._lock = threading.Lock()
        self._value: str | None = None
        self._loaded = False
        self._generation = 0

    @property
    def source(self) -> str:
        """Names where the key comes from, for error messages."""
        if self._command:
            return f"the token from embed_token_command `{self._command}`"
        if self._file is not None:
            return f"the key in {self._file} (embed_api_key_file)"
        return f"the key in ${self._env} (embed_api_key_env)"

    @property
    def fix(self) -> str:
        """What the user does when the server refuses the key."""
        if self._command:
            return ("make embed_token_command print a valid token (log in again if it "
                    "reads a session), then resume the job")
        if self._file is not None:
            return f"write a valid key to {self._file}, then resume the job"
        return (f"set {self._env} to a valid key (or point GRISTMILL_EMBED_API_KEY_FILE or "
                "GRISTMILL_EMBED_TOKEN_COMMAND at one), then resume the job")

    def current(self) -> tuple[int, str | None]:
        """The key (``None``: send none) and its generation, to hand back to
        :meth:`refresh` after a 401."""
        with self._lock:
            if not self._loaded:
                self._value = self._fetch()
                self._loaded = True
            return self._generation, self._value

    def refresh(self, seen: int) -> tuple[int, str | None]:
        """Fetch the key again, unless another request already did since generation
        ``seen``: requests refused together run the token command once, not once each.

        Raises:
            CredentialError: the file cannot be read, or the command fails.
        """
        with self._lock:
            if self._generation == seen:
                self._value = self._fetch()
                self._loaded = True
                self._generation += 1
            return self._generation, self._value

    def _fetch(self) -> str | None:
        if self._command:
            return self._run_command(self._command)
        if self._file is not None:
            try:
                text = self._file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise CredentialError(
                    f"the key file {self._file} (embed_api_key_file)",
                    f"cannot be read ({exc.strerror or exc})",
                    f"write the key to {self._file} or correct GRISTMILL_EMBED_API_KEY_FILE"
                ) from None
            return text or None
        value = os.environ.get(self._env) if self._env else None
        return value.strip() or None if value else None

    @staticmethod
    def _run_command(command: str) -> str:
        # Through the shell: the setting is the user's own command line, pipes included
        # (`vault read -field=key secret/embed | tr -d '\n'`).
        try:
            done = subprocess.run(command, shell=True, capture_output=True, text=True,
                                  timeout=_COMMAND_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise CredentialError(f"embed_token_command `{command}`",
                                  f"printed nothing within {_COMMAND_TIMEOUT:.0f} s",
                                  "make it run without prompting") from None
        token = done.stdout.strip()
        if done.returncode != 0 or not token:
            why = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise CredentialError(f"embed_token_command `{command}`",
                                  f"exited with status {done.returncode} ({why})",
                                  "fix the command or log in again, then resume the job")
        return token
