# expect: work dir full|file size limit exceeded
block = b"0" * 2**20
for n in range(1000):
    with open(f"part{n}.bin", "wb") as f:
        for _ in range(4):
            f.write(block)
