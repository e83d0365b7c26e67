import io
import os
import stat
import tarfile
import zipfile

import pytest

from frescoclient import exceptions
from frescoclient import packaging


def _tree(root):
    (root / "lib").mkdir(parents=True)
    (root / "main.py").write_text("def handler(event, context):\n    return event\n")
    (root / "lib" / "util.py").write_text("X = 1\n")
    (root / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "bootstrap", 0o700)
    return root


def test_zip_is_deterministic_across_mtimes_and_modes(tmp_path):
    root = _tree(tmp_path / "code")
    first = packaging.zip_directory(str(root))
    os.utime(root / "main.py", (1_000_000_000, 1_000_000_000))
    os.chmod(root / "lib" / "util.py", 0o600)
    assert packaging.zip_directory(str(root)) == first
    # A second tree with the same content, created in another order, packs the same.
    other = tmp_path / "other"
    (other / "lib").mkdir(parents=True)
    (other / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    os.chmod(other / "bootstrap", 0o755)
    (other / "lib" / "util.py").write_text("X = 1\n")
    (other / "main.py").write_text("def handler(event, context):\n    return event\n")
    assert packaging.zip_directory(str(other)) == first


def test_zip_content_names_and_modes(tmp_path):
    root = _tree(tmp_path / "code")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")
    (root / "empty").mkdir()
    zf = zipfile.ZipFile(io.BytesIO(packaging.zip_directory(str(root))))
    assert zf.namelist() == ["bootstrap", "main.py", "empty/", "lib/util.py"]
    modes = {i.filename: (i.external_attr >> 16) for i in zf.infolist()}
    assert stat.S_IMODE(modes["bootstrap"]) == 0o755
    assert stat.S_IMODE(modes["main.py"]) == 0o644
    assert stat.S_ISDIR(modes["empty/"])
    assert zf.read("lib/util.py") == b"X = 1\n"
    assert all(i.date_time == (1980, 1, 1, 0, 0, 0) for i in zf.infolist())


def test_symlink_inside_is_stored_as_a_copy(tmp_path):
    root = _tree(tmp_path / "code")
    os.symlink("lib/util.py", root / "alias.py")
    zf = zipfile.ZipFile(io.BytesIO(packaging.zip_directory(str(root))))
    info = zf.getinfo("alias.py")
    assert stat.S_ISREG(info.external_attr >> 16)
    assert zf.read("alias.py") == b"X = 1\n"


@pytest.mark.parametrize("target", ["../outside.txt", "/etc/hostname"])
def test_symlink_escaping_is_refused(tmp_path, target):
    root = _tree(tmp_path / "code")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink(target, root / "leak")
    with pytest.raises(exceptions.ValidationError, match="symlink leak points outside"):
        packaging.zip_directory(str(root))


def test_symlink_to_directory_and_broken_link_refused(tmp_path):
    root = _tree(tmp_path / "code")
    os.symlink("lib", root / "lib2")
    with pytest.raises(exceptions.ValidationError, match="points to a directory"):
        packaging.zip_directory(str(root))
    os.unlink(root / "lib2")
    os.symlink("nothing-here", root / "dangling")
    with pytest.raises(exceptions.ValidationError, match="is broken"):
        packaging.zip_directory(str(root))


def test_special_files_and_empty_dirs_refused(tmp_path):
    root = tmp_path / "code"
    root.mkdir()
    with pytest.raises(exceptions.ValidationError, match="holds no file"):
        packaging.zip_directory(str(root))
    (root / "main.py").write_text("")
    os.mkfifo(root / "pipe")
    with pytest.raises(exceptions.ValidationError, match="pipe is not a regular file"):
        packaging.zip_directory(str(root))
    with pytest.raises(exceptions.ValidationError, match="does not exist"):
        packaging.zip_directory(str(tmp_path / "missing"))


def test_detect_format(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"print(1)\n"
        info = tarfile.TarInfo("main.py")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    path = tmp_path / "code.tgz"
    path.write_bytes(buf.getvalue())
    assert packaging.read_package(str(path)) == (buf.getvalue(), packaging.TAR_GZ)
    root = _tree(tmp_path / "code")
    assert packaging.detect_format(packaging.zip_directory(str(root))) == packaging.ZIP
    with pytest.raises(exceptions.ValidationError, match="neither a zip nor a tar.gz"):
        packaging.detect_format(b"hello")
    with pytest.raises(exceptions.ValidationError, match="cannot read package"):
        packaging.read_package(str(tmp_path / "nope.zip"))
