def handler(event, context):
    name = (event or {}).get("name", "world")
    print("hello log line for", name)
    return {"greeting": "hello " + name}
