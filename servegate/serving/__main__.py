"""``python -m servegate.serving <TensorFlow Serving flags>``: the bundled model server."""

import sys

from servegate.serving.server.main import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
