# expect: ^$
# Ways to become root or remount the jail; any that works prints ESCAPED.
import ctypes
import os
import subprocess

try:
    os.setuid(0)
    print("ESCAPED: setuid(0)")
except OSError as exc:
    print("setuid refused", exc)
for cmd in (["su", "-c", "id"], ["sudo", "-n", "id"], ["newgrp", "root"]):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=2, stdin=subprocess.DEVNULL)
        if r.returncode == 0 and "uid=0" in r.stdout:
            print("ESCAPED:", cmd, r.stdout)
        print("refused", cmd[0], r.returncode)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print("refused", cmd[0], type(exc).__name__)
libc = ctypes.CDLL(None, use_errno=True)
if libc.mount(b"tmpfs", b"/usr", b"tmpfs", 0, None) == 0:
    print("ESCAPED: mounted over /usr")
if libc.umount2(b"/usr", 2) == 0:
    print("ESCAPED: unmounted /usr")
print("done")
