"""Small steps for the pipeline tests: each handler is one function of a pipeline."""
import time


def items(event, context):
    """{"n": N} -> {"n": N, "items": [1..N]}"""
    n = int(event.get("n", 3))
    return {"n": n, "items": list(range(1, n + 1))}


def total(event, context):
    """The sum of the event's items."""
    return sum(event["items"])


def echo(event, context):
    return event


def square(event, context):
    return event * event


def nap(event, context):
    """Sleeps the event's seconds (a number, or {"seconds": s}; a list: none), then hands the
    event on."""
    if isinstance(event, dict):
        seconds = event.get("seconds", 1)
    elif isinstance(event, list):
        seconds = 0
    else:
        seconds = event
    time.sleep(float(seconds))
    return event
