import os


def try_write(path):
    try:
        with open(path, "w") as f:
            f.write("x")
        os.remove(path)
        return "ok"
    except OSError as e:
        return type(e).__name__ + ": " + (e.strerror or str(e))


def handler(event, context):
    return {
        "/tmp": try_write("/tmp/fresco-write-test"),
        "/var/task": try_write("/var/task/fresco-write-test"),
        "/": try_write("/fresco-write-test"),
        "/etc": try_write("/etc/fresco-write-test"),
        "uid": os.getuid(),
    }
