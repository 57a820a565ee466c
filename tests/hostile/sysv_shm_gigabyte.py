# expect: exit status 1 \(shmget refused: Operation not permitted\)
# System V segments outlive their mapping: attach, fill, detach, repeat, past RLIMIT_AS.
import ctypes
import os
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
size = 64 * 2**20
for _ in range(17):
    segment = libc.shmget(0, size, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
    if segment < 0:
        raise SystemExit(f"shmget refused: {os.strerror(ctypes.get_errno())}")
    address = libc.shmat(segment, None, 0)
    ctypes.memset(address, 1, size)
    libc.shmdt(ctypes.c_void_p(address))
print("ESCAPED: a gigabyte of System V shared memory")
time.sleep(0.5)
