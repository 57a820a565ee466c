# expect: timeout after|CPU time limit exceeded
import os

while True:
    try:
        os.fork()
    except OSError:  # out of processes: keep trying, as a real fork bomb does
        continue
