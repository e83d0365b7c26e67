"""Code packages: a deterministic zip of a directory, and format detection of archives."""

import io
import os
import stat
import zipfile

from frescoclient import exceptions

ZIP = "zip"
TAR_GZ = "tar.gz"
CONTENT_TYPES = {ZIP: "application/zip", TAR_GZ: "application/gzip"}

# Directories never worth shipping; everything else is packaged as it is.
SKIPPED_DIRS = frozenset({".git", "__pycache__"})

# The earliest timestamp zip can hold: every entry gets it, so the bytes depend only on
# the names, modes and contents of the files.
_EPOCH = (1980, 1, 1, 0, 0, 0)


def detect_format(data, name="package"):
    """Tells a zip from a gzip-compressed tar by their magic bytes."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return ZIP
    if data[:2] == b"\x1f\x8b":
        return TAR_GZ
    raise exceptions.ValidationError("%s is neither a zip nor a tar.gz archive" % name)


def read_package(path):
    """Reads an archive file; returns (bytes, format)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise exceptions.ValidationError("cannot read package %s: %s" % (path, exc.strerror)) from exc
    return data, detect_format(data, path)


def _entries(root):
    """Yields (archive name, real path, is_dir, executable) in a stable order."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        kept = []
        for d in sorted(dirnames):
            if d in SKIPPED_DIRS:
                continue
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                _check_link(full, real_root, root)
                raise exceptions.ValidationError(
                    "symlink %s points to a directory, which is not packaged; copy it instead"
                    % os.path.relpath(full, root))
            kept.append(d)
        dirnames[:] = kept
        if rel_dir != "." and not filenames and not dirnames:
            yield _name(rel_dir) + "/", dirpath, True, False
        for f in sorted(filenames):
            full = os.path.join(dirpath, f)
            rel = os.path.normpath(os.path.join(rel_dir, f))
            if os.path.islink(full):
                target = _check_link(full, real_root, root)
                st = os.stat(target)
            else:
                st = os.lstat(full)
            if not stat.S_ISREG(st.st_mode):
                raise exceptions.ValidationError(
                    "%s is not a regular file and cannot be packaged" % rel)
            yield _name(rel), full, False, bool(st.st_mode & 0o111)


def _name(rel):
    return rel.replace(os.sep, "/")


def _check_link(path, real_root, root):
    target = os.path.realpath(path)
    if target != real_root and not target.startswith(real_root + os.sep):
        raise exceptions.ValidationError(
            "symlink %s points outside the code directory" % os.path.relpath(path, root))
    if not os.path.exists(target):
        raise exceptions.ValidationError("symlink %s is broken" % os.path.relpath(path, root))
    return target


def zip_directory(root):
    """Packages a directory as a zip archive; the same tree always gives the same bytes.

    Entries are sorted, timestamps fixed, modes normalised to 0644 or 0755 (executable bits
    kept, so a `provided` runtime's `bootstrap` stays runnable). A symlink to a file inside
    the directory is stored as a copy of that file; a symlink leaving the directory, a
    symlink to a directory and any special file are refused.
    """
    if not os.path.isdir(root):
        raise exceptions.ValidationError("code directory %s does not exist" % root)
    buf = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buf, "w") as zf:
        for name, path, is_dir, executable in _entries(root):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.create_system = 3  # unix, so external_attr carries the mode
            if is_dir:
                info.external_attr = (stat.S_IFDIR | 0o755) << 16 | 0x10
                zf.writestr(info, b"")
                continue
            info.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                zf.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
            count += 1
    if count == 0:
        raise exceptions.ValidationError("code directory %s holds no file" % root)
    return buf.getvalue()
