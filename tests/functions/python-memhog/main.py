def handler(event, context):
    chunks = []
    for _ in range(int((event or {}).get("mb", 1024))):
        chunks.append(bytearray(1024 * 1024))
    return len(chunks)
