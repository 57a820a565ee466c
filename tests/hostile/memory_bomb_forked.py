# expect: memory limit exceeded
# Each process stays under the per-process limit; together they hold many times it.
import os
import time

for _ in range(12):
    if os.fork() == 0:
        hoard = bytearray(b"\x01") * (200 * 2**20)
        time.sleep(60)
        os._exit(0)
time.sleep(60)
