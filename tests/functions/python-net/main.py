import os
import socket


def try_connect(host, port):
    try:
        with socket.create_connection((host, port), timeout=2):
            return "connected"
    except OSError as e:
        return type(e).__name__ + ": " + (e.strerror or str(e))


def handler(event, context):
    try:
        interfaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        interfaces = sorted(os.listdir("/sys/class/net"))
    return {
        "interfaces": interfaces,
        "public": try_connect("1.1.1.1", 53),
        "private": try_connect("10.0.0.1", 80),
        "dns": try_connect("deb.debian.org", 80),
    }
