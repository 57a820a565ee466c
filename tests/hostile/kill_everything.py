# expect: killed by signal SIGKILL
# Signals everything it may (the jail's init, its own children, all with kill -1), then itself.
import contextlib
import os
import signal
import time

for _ in range(3):
    if os.fork() == 0:
        time.sleep(60)
with contextlib.suppress(OSError):
    os.kill(1, signal.SIGKILL)
with contextlib.suppress(OSError):
    os.kill(-1, signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
