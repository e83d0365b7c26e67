import fcntl
import socket
import struct
import threading

SIOCGIFADDR = 0x8915


def address(interface):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = struct.pack("256s", interface[:15].encode())
            return socket.inet_ntoa(fcntl.ioctl(s.fileno(), SIOCGIFADDR, packed)[20:24])
    except OSError:
        return None


def try_connect(host, port):
    """"connected" (with the peer's banner if it sent one) once TCP connects, else the error."""
    try:
        s = socket.create_connection((host, port), timeout=2)
    except OSError as e:
        return type(e).__name__ + ": " + (e.strerror or str(e))
    with s:
        try:
            s.settimeout(1)
            banner = s.recv(64).decode(errors="replace").strip()
        except OSError:
            banner = ""
        return "connected" + (": " + banner if banner else "")


def serve(listener):
    while True:
        conn, _ = listener.accept()
        try:
            conn.sendall(b"tenant-secret\n")
        finally:
            conn.close()


def handler(event, context):
    """Reports its interfaces and address, optionally listens on a port (like a tenant's
    service), and tries to connect to each target: {"listen": port, "targets": [[host, port]]}."""
    event = event or {}
    listening = None
    if event.get("listen"):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", int(event["listen"])))
        listener.listen(16)
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        listening = int(event["listen"])
    return {
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
        "address": address("eth0"),
        "listening": listening,
        "results": {f"{h}:{p}": try_connect(h, int(p)) for h, p in event.get("targets", [])},
    }
