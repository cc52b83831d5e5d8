"""The local executor: stopping its pool while workers are still starting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# A driver whose workers (but the first) start slowly, as on a loaded machine: the
# fork server runs this file again as ``__mp_main__`` in each worker before the worker
# unpickles the pool's channel and its semaphores. The first worker is frozen (SIGSTOP:
# a worker deep in a C call answers SIGTERM late), so pebble, stopping its workers one
# by one, waits its 3 s for that one while the others finish starting.
_DRIVER = '''
import os, sys, time
from pathlib import Path

MARK = Path(__file__).with_name("first-worker")
if __name__ == "__mp_main__":
    try:
        fd = os.open(MARK, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        time.sleep(1.0)
    else:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)

if __name__ == "__main__":
    import signal
    from gristmill.config import Settings
    from gristmill.runtime.executors.local import LocalExecutor
    from gristmill.runtime.worker import WorkOptions

    home = Path(sys.argv[1])
    settings = Settings(home=home, workers=4)
    executor = LocalExecutor(settings, WorkOptions.from_settings(settings, [home]))
    executor.submit(str(home / "absent.txt"))  # the pool starts its workers
    deadline = time.monotonic() + 30
    while not (MARK.exists() and MARK.read_text()):
        assert time.monotonic() < deadline, "no worker started"
        time.sleep(0.01)
    os.kill(int(MARK.read_text()), signal.SIGSTOP)
    executor.shutdown(kill=True)
    time.sleep(1.5)  # a worker that outlived the shutdown would have failed by now
    print("stopped")
'''


def test_stopping_the_pool_while_workers_start_prints_no_traceback(tmp_path: Path) -> None:
    """A pool stopped while workers are still starting ends them without a traceback
    (no ``SemLock._rebuild FileNotFoundError`` from a worker that lost its semaphores)."""
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    done = subprocess.run([sys.executable, str(script), str(home)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert "stopped" in done.stdout
    assert "Traceback" not in done.stderr, done.stderr
