#!/usr/bin/env python3
"""Sequential HTTP timing over one keep-alive connection (stdlib only), for bench/*.sh.

  seq.py walk URL TOKEN              follow "next" links from URL; page latency summary
  seq.py get URL TOKEN N             N sequential GETs (a no-op path baseline)
  seq.py invoke URL TOKEN BODY N     N sequential POSTs of BODY to an invoke URL; total time,
                                     the agent's x-execution-duration-ms, and the difference

Prints one line of key=value pairs (milliseconds), like the wrk report script.
"""
import http.client
import json
import sys
import time
from urllib.parse import urlsplit


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def connect(url):
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def path_of(url):
    u = urlsplit(url)
    return u.path + ("?" + u.query if u.query else "")


def request(conn, method, path, token, body=None):
    headers = {"X-Auth-Token": token}
    if body is not None:
        headers["Content-Type"] = "application/json"
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return (time.perf_counter() - t0) * 1000.0, resp, data


def walk(url, token):
    conn = connect(url)
    times, rows, path = [], 0, path_of(url)
    while path:
        ms, resp, data = request(conn, "GET", path, token)
        if resp.status != 200:
            sys.exit(f"GET {path} answered {resp.status}: {data[:200]!r}")
        doc = json.loads(data)
        times.append(ms)
        rows += len(doc["functions"])
        path = path_of(doc["next"]) if doc.get("next") else None
    first, last = times[:10], times[-10:]
    print(f"pages={len(times)} rows={rows} p50_ms={pct(times, 50):.3f} p99_ms={pct(times, 99):.3f} "
          f"first10_p50_ms={pct(first, 50):.3f} last10_p50_ms={pct(last, 50):.3f}")


def get(url, token, n):
    conn, path, times, bad = connect(url), path_of(url), [], 0
    for _ in range(n):
        ms, resp, _ = request(conn, "GET", path, token)
        bad += resp.status != 200
        times.append(ms)
    print(f"n={n} non200={bad} p50_ms={pct(times, 50):.3f} p99_ms={pct(times, 99):.3f}")


def invoke(url, token, body, n):
    conn, path = connect(url), path_of(url)
    total, handler, overhead, bad, cold = [], [], [], 0, 0
    for _ in range(n):
        ms, resp, _ = request(conn, "POST", path, token, body.encode())
        if resp.status != 200 or resp.getheader("x-execution-status") != "succeeded":
            bad += 1
            continue
        d = float(resp.getheader("x-execution-duration-ms", "nan"))
        cold += resp.getheader("x-execution-cold") == "true"
        total.append(ms)
        handler.append(d)
        overhead.append(ms - d)
    print(f"n={n} failed={bad} cold={cold} "
          f"p50_ms={pct(total, 50):.3f} p99_ms={pct(total, 99):.3f} "
          f"handler_p50_ms={pct(handler, 50):.3f} handler_p99_ms={pct(handler, 99):.3f} "
          f"overhead_p50_ms={pct(overhead, 50):.3f} overhead_p99_ms={pct(overhead, 99):.3f}")


def main(argv):
    if len(argv) >= 3 and argv[0] == "walk":
        walk(argv[1], argv[2])
    elif len(argv) == 4 and argv[0] == "get":
        get(argv[1], argv[2], int(argv[3]))
    elif len(argv) == 5 and argv[0] == "invoke":
        invoke(argv[1], argv[2], argv[3], int(argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
