import errno
import os
import time


def handler(event, context):
    """Forks until the kernel refuses; every child forks once more, then sleeps."""
    limit = int((event or {}).get("max", 10000))
    children = 0
    refused = None
    for _ in range(limit):
        try:
            pid = os.fork()
        except OSError as e:
            refused = errno.errorcode.get(e.errno, str(e.errno))
            break
        if pid == 0:
            try:
                os.fork()
            except OSError:
                pass
            time.sleep(120)
            os._exit(0)
        children += 1
    return {"children": children, "refused": refused}
