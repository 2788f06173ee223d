"""Object stores are refused as a store root or area, before anything is written (issue 14, part 3).

The mount a path is on comes from ``/proc/self/mountinfo``; these tests craft that file, with the
escapes, optional fields and stacked mounts the kernel writes, and run the CLI as users meet it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from servegate.model_store import ModelStore
from servegate.model_store.filesystems import (
    UnsafeStoreLocation,
    check_store_location,
    mount_of,
    parse_mountinfo,
)
from tests.support.cli import run_servegate


def mountinfo(tmp_path: Path, *extra: str) -> Path:
    """A mountinfo file: / on ext4 plus ``extra`` lines (``mount_point fs_type source``)."""
    lines = ["22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro"]
    for n, spec in enumerate(extra, start=30):
        point, fs_type, source = spec.split()
        lines.append(f"{n} 22 0:{n} / {point} rw,nosuid,nodev,relatime shared:{n} - {fs_type} {source} rw")
    path = tmp_path / "mountinfo"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_parse_mountinfo_reads_type_source_and_escaped_mount_points():
    text = ("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
            "41 22 0:45 / /mnt/my\\040bucket rw,nosuid master:3 shared:9 - fuse.s3fs s3fs rw,user_id=0\n"
            "42 22 0:46 / /srv/nfs rw - nfs4 fileserver:/export rw,vers=4.2\n"
            "not a mountinfo line\n")
    mounts = parse_mountinfo(text)
    assert [(m.mount_point, m.fs_type, m.source) for m in mounts] == [
        ("/", "ext4", "/dev/sda1"), ("/mnt/my bucket", "fuse.s3fs", "s3fs"), ("/srv/nfs", "nfs4", "fileserver:/export")]
    assert [m.object_store for m in mounts] == [None, "s3fs", None]


@pytest.mark.parametrize("fs_type, source, kind", [
    ("fuse.s3fs", "s3fs", "s3fs"), ("fuse.goofys", "bucket", "goofys"), ("fuse.gcsfuse", "bucket", "gcsfuse"),
    ("fuse.rclone", "remote:bucket", "rclone"), ("fuse", "mountpoint-s3", "mountpoint-s3"),
    ("fuse.blobfuse2", "blobfuse2", "blobfuse2"),
])
def test_an_object_store_fuse_mount_is_refused_naming_why_and_what_instead(tmp_path, fs_type, source, kind):
    info = mountinfo(tmp_path, f"/mnt/models {fs_type} {source}")
    with pytest.raises(UnsafeStoreLocation) as err:
        check_store_location("/mnt/models/store", mountinfo=info)
    message = str(err.value)
    assert f"a {kind} mount of an object store" in message and "'/mnt/models'" in message
    assert "no atomic rename" in message and "NFSv4" in message


@pytest.mark.parametrize("fs_type, source", [("ext4", "/dev/sdb1"), ("nfs4", "files:/export"),
                                             ("fuse.sshfs", "host:/x"), ("fuse.juicefs", "redis://meta"),
                                             ("xfs", "/dev/sdc")])
def test_posix_filesystems_are_accepted(tmp_path, fs_type, source):
    info = mountinfo(tmp_path, f"/mnt/models {fs_type} {source}")
    check_store_location("/mnt/models/store", {"production": "/mnt/models/prod"}, mountinfo=info)


def test_the_deepest_and_last_listed_mount_wins(tmp_path):
    # /data is an s3fs bucket, /data/local is a disk mounted on top of a path inside it;
    # /stack was a bucket, then a disk was mounted over it (the later line hides the earlier).
    info = mountinfo(tmp_path, "/data fuse.s3fs s3fs", "/data/local ext4 /dev/sdb1",
                     "/stack fuse.goofys b", "/stack ext4 /dev/sdc1")
    mounts = parse_mountinfo(info.read_text())
    assert mount_of("/data/local/store", mounts).fs_type == "ext4"
    assert mount_of("/data/other", mounts).fs_type == "fuse.s3fs"
    assert mount_of("/database", mounts).mount_point == "/"  # a name that only starts like a mount point
    assert mount_of("/stack/store", mounts).fs_type == "ext4"
    check_store_location("/data/local/store", mountinfo=info)
    with pytest.raises(UnsafeStoreLocation):
        check_store_location("/data/other/store", mountinfo=info)


def test_the_production_area_is_checked_as_well_as_the_root(tmp_path):
    info = mountinfo(tmp_path, "/mnt/serving fuse.gcsfuse bucket")
    with pytest.raises(UnsafeStoreLocation, match=r"production area '/mnt/serving/models' is on '/mnt/serving'"):
        check_store_location(tmp_path / "store", {"production": "/mnt/serving/models"}, mountinfo=info)


def test_a_symlink_into_a_bucket_mount_is_followed(tmp_path):
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    (tmp_path / "link").symlink_to(bucket)
    info = mountinfo(tmp_path, f"{bucket} fuse.s3fs s3fs")
    with pytest.raises(UnsafeStoreLocation, match="s3fs mount"):
        check_store_location(tmp_path / "link" / "store", mountinfo=info)


@pytest.mark.parametrize("uri, words", [("s3://bucket/models", "is an object store (s3://)"),
                                        ("gs://bucket/models", "is an object store (gs://)"),
                                        ("https://example.com/models", "is a URI (https://); expected a directory path")])
def test_uris_are_refused_by_the_store_before_anything_is_written(tmp_path, monkeypatch, uri, words):
    monkeypatch.chdir(tmp_path)  # Path("s3://b") would be a folder "s3:" in the working directory
    with pytest.raises(UnsafeStoreLocation, match=re.escape(words)):
        ModelStore(uri)
    with pytest.raises(UnsafeStoreLocation, match="production area"):
        ModelStore(tmp_path / "store", areas={"production": uri})
    assert list(tmp_path.iterdir()) == []


def test_a_missing_mountinfo_checks_nothing(tmp_path):
    check_store_location("/anywhere", mountinfo=tmp_path / "absent")


def test_the_cli_refuses_a_gs_store_with_the_reason_on_its_last_line(tmp_path):
    # s3:// roots are the object-store mode (tests/object_store); any other object store is refused
    done = run_servegate("serve", "--store", "gs://bucket/models", "--name", "m", home=tmp_path, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "--store 'gs://bucket/models' is an object store" in last and "no atomic rename" in last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "gs:").exists()


def test_an_s3_store_without_credentials_is_refused_by_name(tmp_path):
    no_aws = {k: None for k in os.environ if k.startswith("AWS_")}
    done = run_servegate("serve", "--store", "s3://bucket/models", "--name", "m", home=tmp_path, timeout=120,
                         env=no_aws)
    assert done.returncode == 2, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "no AWS credentials found" in last and "AWS_ACCESS_KEY_ID" in last, last
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s3:").exists()


def test_a_uri_that_went_through_path_is_still_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeStoreLocation, match=re.escape("is an object store (s3://)")):
        ModelStore(Path("s3://bucket/models"))  # PosixPath('s3:/bucket/models')
    ModelStore(Path("models"))  # a plain relative path is fine
