import time


def handler(event, context):
    started = time.time()
    time.sleep(float((event or {}).get("seconds", 1)))
    return {"started": started, "ended": time.time()}
