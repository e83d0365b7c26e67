import os
import subprocess
import time


def handler(event, context):
    """Leaves a busy loop behind in a new session when asked, sleeps, and reports its uid."""
    event = event or {}
    if event.get("spawn"):
        subprocess.Popen(
            ["/bin/sh", "-c", "while :; do :; done"],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    time.sleep(float(event.get("sleep", 0)))
    return {"uid": os.getuid(), "gid": os.getgid(), "spawned": bool(event.get("spawn"))}
