"""``python -m servegate.serving <TensorFlow Serving flags>``: the bundled model server."""

import sys

from servegate.serving.server.without_keras import keep_keras_out

if __name__ == "__main__":
    keep_keras_out()  # before main imports TensorFlow
    from servegate.serving.server.main import run

    sys.exit(run(sys.argv[1:]))
