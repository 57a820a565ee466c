# expect: exit status 1 \(unshare refused: Operation not permitted\)
# As root of a user namespace of its own, mount a tmpfs with no bound and fill a gigabyte of
# host shared memory.
import ctypes
import os
import time

libc = ctypes.CDLL(None, use_errno=True)
uid, gid = os.getuid(), os.getgid()
libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE, so /proc/self/*_map are its own to write
if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
    raise SystemExit(f"unshare refused: {os.strerror(ctypes.get_errno())}")
for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
    with open(f"/proc/self/{name}", "w") as f:
        f.write(text)
os.makedirs("mnt", exist_ok=True)
if libc.mount(b"tmpfs", b"mnt", b"tmpfs", 0, b"size=4g") != 0:
    raise SystemExit(f"mount refused: {os.strerror(ctypes.get_errno())}")
block = b"x" * 2**20
for n in range(1100):
    with open(f"mnt/f{n}", "wb") as f:
        f.write(block)
print("ESCAPED: a gigabyte in a tmpfs of its own")
time.sleep(0.5)
