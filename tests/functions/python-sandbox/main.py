import os

import marker


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def handler(event, context):
    """Reports which sandbox it runs in, with what code, environment and limits."""
    print("python-sandbox ran in", os.uname().nodename)
    return {
        "host": os.uname().nodename,
        "marker": marker.MARKER,
        "greeting": os.environ.get("GREETING"),
        "function_name": context.function_name,
        "memory_size": os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
        "memory_limit": _read("/sys/fs/cgroup/memory/memory.limit_in_bytes") or _read("/sys/fs/cgroup/memory.max"),
        "cpu_quota": _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") or _read("/sys/fs/cgroup/cpu.max"),
        "pids_max": _read("/sys/fs/cgroup/pids/pids.max") or _read("/sys/fs/cgroup/pids.max"),
        "uid": os.getuid(),
        "task_files": sorted(os.listdir("/var/task")),
        "fresco_vars": sorted(k for k in os.environ if k.startswith("FRESCO_")),
    }
