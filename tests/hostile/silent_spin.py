# expect: CPU time limit exceeded|timeout after
import os

os.close(1)
os.close(2)
while True:
    pass
