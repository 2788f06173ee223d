"""Serving: the canary runners, the bundled server, the client. Imports nothing, so that naming the
kinds costs nothing."""

#: the canary runner kinds (``--serving``): servegate.serving.runners.make_runner builds each
RUNNER_KINDS = ("process", "docker")
