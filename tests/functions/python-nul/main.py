def handler(event, context):
    # NUL characters in everything a function produces: its output, its result, its error.
    print("before\x00after")
    if (event or {}).get("fail"):
        raise ValueError("bad\x00error")
    return "nul\x00here"
