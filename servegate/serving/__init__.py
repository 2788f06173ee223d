"""Serving: the canary runners, the bundled server, the client. Imports nothing, so that naming the
kinds costs nothing."""

#: the canary runner kinds (``--serving``): servegate.serving.runners.make_runner builds each
RUNNER_KINDS = ("process", "docker")
#: TensorFlow Serving's binary: the process runner runs it when it is on PATH (else the bundled server)
TFS_BINARY = "tensorflow_model_server"
