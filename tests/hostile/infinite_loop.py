# expect: CPU time limit exceeded|timeout after
while True:
    pass
