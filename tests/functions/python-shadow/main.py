import os


def handler(event, context):
    """Doubles `n`. With MODE=shadow (a candidate version) it differs on some inputs: it
    refuses multiples of 5 and answers one more on other multiples of 3. Both refuse n < 0."""
    n = event.get("n", 0)
    if n < 0:
        raise ValueError("n must not be negative")
    if os.environ.get("MODE") == "shadow":
        if n % 5 == 0:
            raise ValueError("the candidate refuses multiples of 5")
        if n % 3 == 0:
            return {"n": n, "double": n * 2 + 1}
    return {"n": n, "double": n * 2}
