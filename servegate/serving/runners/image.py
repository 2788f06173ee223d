"""The registry-free local serving image: TensorFlow Serving's container contract, run by the bundled server.

No registry is needed: the image is ``docker import`` of a tiny root file
system made here in Python (``/models``, ``/tmp``, ``/etc/passwd``, the
``/bin``-style symlinks of a merged-/usr host and an entrypoint script). All
the software comes from the host at run time: the image's
``servegate.host-mounts`` label lists the host paths (the Python
installation, the virtualenv, the servegate source, and the system dirs the
interpreter and TensorFlow link against) that
:class:`~servegate.serving.runners.docker.DockerRunner` bind-mounts read-only
at the same place. The image therefore only works on the host that built it,
which is what tests and CI need; users with a registry use
``tensorflow/serving``.

The entrypoint maps the contract to the bundled server's flags, like the
official image's ``tf_serving_entrypoint.sh``::

    python -m servegate.serving --port=8500 --rest_api_port=8501 --bind_address=0.0.0.0 \
        --model_name=$MODEL_NAME --model_base_path=$MODEL_BASE_PATH/$MODEL_NAME "$@"

(a ``--model_config_file`` among the arguments wins over the base path, as in
TensorFlow Serving).

:func:`ensure_local_image` is idempotent: the image carries a
``servegate.build-key`` label (a hash of everything above), and is rebuilt only
when the key changes (another virtualenv, another Python). Build it without
the CLI with ``python -m servegate.serving.runners.image``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import filelock

from servegate.errors import ServingError
from servegate.serving.runners.docker import HOST_MOUNTS_LABEL, LOCAL_IMAGE_TAG, connect

BUILD_KEY_LABEL = "servegate.build-key"
ENTRYPOINT = "/servegate/entrypoint.sh"
#: How the bundled server is told to listen on every interface inside a container.
BIND_FLAG = "--bind_address=0.0.0.0"
#: Bump when the layout of the image changes, to force a rebuild.
FORMAT = 1
#: System dirs the interpreter, TensorFlow and the entrypoint's /bin/sh need, when present on the host.
SYSTEM_PATHS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc/ssl", "/etc/alternatives",
                "/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")


@dataclass(frozen=True)
class ImagePlan:
    """Everything the image depends on; its hash is the build key."""

    python: str                       # the interpreter the entrypoint runs (the virtualenv's)
    mounts: tuple[str, ...]           # host paths bind-mounted read-only at the same place
    symlinks: tuple[tuple[str, str], ...]  # (path, target) for system dirs that are symlinks on the host
    entrypoint: str                   # the entrypoint script text

    @property
    def build_key(self) -> str:
        text = json.dumps([FORMAT, self.python, self.mounts, self.symlinks, self.entrypoint])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_root() -> Path:
    """The directory servegate is imported from (the project for an editable install)."""
    import servegate

    return Path(servegate.__file__).resolve().parent.parent


def _outermost(paths: list[str]) -> tuple[str, ...]:
    """Drop paths inside another path of the list (a mount already covers them); keep order."""
    chosen: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == c or path.startswith(c.rstrip("/") + "/") for c in chosen):
            chosen.append(path)
    return tuple(sorted(chosen))


def plan() -> ImagePlan:
    """The image this host needs now."""
    mounts: list[str] = []
    symlinks: list[tuple[str, str]] = []
    for path in SYSTEM_PATHS:
        if os.path.islink(path) and os.path.dirname(path) == "/":
            symlinks.append((path.lstrip("/"), os.readlink(path)))  # e.g. /lib -> usr/lib on merged-/usr hosts
        elif os.path.exists(path):
            mounts.append(path)
    source = os.path.realpath(_source_root())
    for path in (sys.base_prefix, sys.prefix, source):
        mounts.append(os.path.realpath(path))
    python = sys.executable  # inside sys.prefix, which is mounted
    server = f"{python} -m servegate.serving --port=8500 --rest_api_port=8501 {BIND_FLAG}"
    entrypoint = "\n".join([
        "#!/bin/sh",
        "# servegate/bundled-serving: TensorFlow Serving's container contract -> the bundled server.",
        # The servegate that built the image, from its mounted source: the virtualenv's own entry may
        # point elsewhere (an editable install of another checkout) or nowhere (a checkout on PYTHONPATH).
        f'export PYTHONPATH="{source}${{PYTHONPATH:+:$PYTHONPATH}}"',
        f'exec {server} --model_name="${{MODEL_NAME}}" --model_base_path="${{MODEL_BASE_PATH}}/${{MODEL_NAME}}" "$@"',
        "",
    ])
    return ImagePlan(python=python, mounts=_outermost(mounts), symlinks=tuple(sorted(symlinks)),
                     entrypoint=entrypoint)


def rootfs_tarball(image_plan: ImagePlan) -> bytes:
    """The image's whole file system, a few kilobytes: dirs, symlinks, /etc/passwd, the entrypoint."""
    buffer = io.BytesIO()

    def add(tar: tarfile.TarFile, name: str, *, kind=tarfile.DIRTYPE, mode=0o755, data: bytes | None = None,
            link: str = "") -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.linkname, info.mtime = kind, mode, link, 0
        if data is not None:
            info.size = len(data)
        tar.addfile(info, io.BytesIO(data) if data is not None else None)

    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("models", "etc", "root", "servegate", "servegate-config", "proc", "sys", "dev", "run"):
            add(tar, directory)
        add(tar, "tmp", mode=0o1777)
        for path, target in image_plan.symlinks:
            add(tar, path, kind=tarfile.SYMTYPE, mode=0o777, link=target)
        add(tar, "etc/passwd", kind=tarfile.REGTYPE, mode=0o644,
            data=b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
        add(tar, "etc/group", kind=tarfile.REGTYPE, mode=0o644, data=b"root:x:0:\nnogroup:x:65534:\n")
        add(tar, ENTRYPOINT.lstrip("/"), kind=tarfile.REGTYPE, mode=0o755, data=image_plan.entrypoint.encode())
    return buffer.getvalue()


def _changes(image_plan: ImagePlan) -> list[str]:
    return [
        f'ENTRYPOINT ["{ENTRYPOINT}"]',
        "ENV MODEL_NAME=model",
        "ENV MODEL_BASE_PATH=/models",
        "ENV HOME=/tmp",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ENV PYTHONDONTWRITEBYTECODE=1",  # the source is mounted read-only
        "ENV PYTHONUNBUFFERED=1",
        "ENV TF_CPP_MIN_LOG_LEVEL=2",
        "EXPOSE 8500 8501",
        "WORKDIR /tmp",
        # Single quotes keep the JSON's double quotes literal in Dockerfile syntax.
        f"LABEL {HOST_MOUNTS_LABEL}='{json.dumps(list(image_plan.mounts), separators=(',', ':'))}'",
        f"LABEL {BUILD_KEY_LABEL}={image_plan.build_key}",
    ]


def ensure_local_image(tag: str = LOCAL_IMAGE_TAG, client=None) -> str:
    """Build the local image under ``tag`` unless one with the current build key exists; return ``tag``.

    Safe to call from several processes at once (a file lock serialises builds).
    """
    import docker.errors

    client = client or connect()
    image_plan = plan()
    lock_path = Path(tempfile.gettempdir()) / f"servegate-image-{hashlib.sha1(tag.encode()).hexdigest()[:8]}.lock"
    with filelock.FileLock(str(lock_path), timeout=120):
        existing = None
        try:
            existing = client.images.get(tag)
            if (existing.labels or {}).get(BUILD_KEY_LABEL) == image_plan.build_key:
                return tag
        except docker.errors.ImageNotFound:
            pass
        repository, _, version = tag.rpartition(":") if ":" in tag.split("/")[-1] else (tag, "", "latest")
        client.api.import_image_from_data(rootfs_tarball(image_plan), repository=repository, tag=version,
                                          changes=_changes(image_plan))
        built = client.images.get(tag)
        if (built.labels or {}).get(BUILD_KEY_LABEL) != image_plan.build_key:
            raise ServingError(f"docker import of {tag} did not keep the build-key label: {built.labels}")
        if existing is not None and existing.id != built.id:
            try:  # the stale build is now untagged: drop it unless a container still uses it
                client.images.remove(existing.id)
            except docker.errors.APIError:
                pass
    return tag


def main() -> int:
    tag = sys.argv[1] if len(sys.argv) > 1 else LOCAL_IMAGE_TAG
    print(ensure_local_image(tag))
    return 0


if __name__ == "__main__":
    sys.exit(main())
