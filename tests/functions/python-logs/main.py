import os
import subprocess
import sys


def handler(event, context):
    """Prints `lines` numbered lines for invocation `n`, then (unbuffered, without a newline)
    its last words just before it answers; with `background`, leaves a process behind that
    writes `late n` after the answer has gone."""
    n = event["n"]
    for i in range(int(event.get("lines", 3))):
        print("inv %s line %d" % (n, i))
    if event.get("background"):
        subprocess.Popen(
            [sys.executable, "-c", "import os, time; time.sleep(0.3); os.write(1, b'late %s\\n')" % n],
            stdin=subprocess.DEVNULL,
        )
    sys.stdout.flush()
    os.write(1, ("last words %s" % n).encode())
    return {"n": n}
