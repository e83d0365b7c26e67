import time


def handler(event, context):
    time.sleep(float((event or {}).get("seconds", 10)))
    return "woke up"
