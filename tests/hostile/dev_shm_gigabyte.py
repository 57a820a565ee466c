# expect: work dir full
# /dev/shm is where POSIX shared memory lives; it must share the work dir's bound.
import time

block = b"x" * 2**20
for n in range(1100):
    with open(f"/dev/shm/f{n}", "wb") as f:
        f.write(block)
print("ESCAPED: a gigabyte in /dev/shm")
time.sleep(0.5)
