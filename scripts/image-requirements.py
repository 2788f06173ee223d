"""Print the image's requirements (docs/scaling.md): pyproject.toml's dependencies with TensorFlow's CPU build.

``tensorflow`` becomes ``tensorflow-cpu`` with the same version range (no GPU
libraries in the image; the version constraints.txt pins for ``tensorflow``
when that file is there). ``tensorflow-serving-api`` names ``tensorflow`` as a
dependency, which would pull the full build in beside the CPU one, so it is left
out here and installed with ``--no-deps``: ``--tfs-api`` prints its line alone.
Used by the Dockerfile and by scripts/build-image.sh (the wheelhouse), so the
two never disagree.
"""

import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).resolve().parent.parent / "pyproject.toml")


def name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()


def tested_tensorflow() -> str | None:
    """The TensorFlow version constraints.txt (beside pyproject.toml) holds, if any: the CPU build gets the same."""
    constraints = PYPROJECT.parent / "constraints.txt"
    if not constraints.exists():
        return None
    found = re.search(r"^tensorflow==(\S+)", constraints.read_text(), re.MULTILINE)
    return found.group(1) if found else None


def main() -> None:
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pinned = tested_tensorflow()
    if len(sys.argv) > 1 and sys.argv[1] == "--tfs-api":
        print("\n".join(r for r in deps if name(r) == "tensorflow-serving-api"))
        return
    for req in deps:
        if name(req) == "tensorflow":
            print(f"tensorflow-cpu=={pinned}" if pinned else "tensorflow-cpu" + req[len("tensorflow"):])
        elif name(req) != "tensorflow-serving-api":
            print(req)


if __name__ == "__main__":
    main()
