# expect: exit status 1 \(PermissionError: \[Errno 1\] Operation not permitted\)
# Anonymous files: shared memory that is neither mapped (RLIMIT_AS) nor resident in a process.
import os
import time

block = b"x" * 2**20
fds = []
for _ in range(130):
    fd = os.memfd_create("hoard")
    for _ in range(8):  # 8 MB each, within the file size limit
        os.write(fd, block)
    fds.append(fd)
print("ESCAPED: a gigabyte in memfds")
time.sleep(0.5)
