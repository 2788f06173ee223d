# servegate's image: the CLI, Prefect (for a worker or a flow run) and the bundled
# TensorFlow-Serving-compatible server, as a non-root user.
#
#   docker build -t servegate:0.1.0 .
#   docker run --rm servegate:0.1.0 servegate --help
#   docker run --rm servegate:0.1.0 prefect worker start --pool servegate-process --type process
#
# Build arguments (all optional; docs/scaling.md):
#   BASE_IMAGE       a Debian-like image with python3 >= 3.11 and its venv module (default: the official slim image)
#   INDEX_URL        pip's index (default: pip's own, PyPI); EXTRA_INDEX_URL: one more
#   FIND_LINKS       a wheelhouse (a URL or a path inside the build) pip may install from
#   NO_INDEX=1       install from FIND_LINKS only
# Give an index that needs credentials as a BuildKit secret, never as an argument: arguments
# are kept in the image's history.
ARG BASE_IMAGE=python:3.11-slim

# The requirements alone (scripts/image-requirements.py), in a stage of their own: the install layer
# below is keyed on their content, so an edit to pyproject.toml that leaves them as they are (a comment,
# a pytest marker) does not reinstall TensorFlow. No constraints.txt: an empty one.
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml constraints.tx[t] /src/
COPY scripts/image-requirements.py /src/scripts/image-requirements.py
RUN mkdir /req \
 && python3 /src/scripts/image-requirements.py - /src/pyproject.toml >/req/requirements.txt \
 && python3 /src/scripts/image-requirements.py --tfs-api /src/pyproject.toml >/req/tfs-api.txt \
 && if [ -f /src/constraints.txt ]; then cp /src/constraints.txt /req/; else : >/req/constraints.txt; fi

FROM ${BASE_IMAGE}

ARG INDEX_URL=""
ARG EXTRA_INDEX_URL=""
ARG FIND_LINKS=""
ARG NO_INDEX=""

ENV VIRTUAL_ENV=/opt/servegate \
    PATH=/opt/servegate/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    HOME=/home/servegate \
    SERVEGATE_HOME=/home/servegate/.servegate

# The user and the virtualenv first: they never change, so Docker's layer cache keeps them.
RUN useradd --create-home --uid 10001 --user-group servegate \
 && python3 -m venv /opt/servegate \
 && mkdir -p /models /work && chown servegate:servegate /models /work

# pip's options from the build arguments (an empty argument adds nothing); removed at the end,
# so that no index or wheelhouse address stays in the image.
RUN printf '%s\n' '#!/bin/sh' \
      "exec /opt/servegate/bin/python -m pip install --no-compile ${INDEX_URL:+--index-url $INDEX_URL} ${EXTRA_INDEX_URL:+--extra-index-url $EXTRA_INDEX_URL} ${FIND_LINKS:+--find-links $FIND_LINKS} ${NO_INDEX:+--no-index} \"\$@\"" \
      >/usr/local/bin/servegate-pip-install \
 && chmod 755 /usr/local/bin/servegate-pip-install \
 && servegate-pip-install --upgrade pip "setuptools>=77" wheel

# Dependencies from the requirements alone, so that a change to servegate's code does not reinstall
# TensorFlow. TensorFlow's CPU build replaces `tensorflow` (same version range): the image has no
# GPU libraries. tensorflow-serving-api asks for `tensorflow` by name, so it is installed without
# its dependencies (its others, grpcio and protobuf, come with servegate's and TensorFlow's);
# `pip check` therefore reports `tensorflow` missing for tensorflow-serving-api and servegate, and only that.
# constraints.txt (the tested versions of every package), when the project has one, holds them all.
COPY --from=requirements /req /src/req
RUN servegate-pip-install -r /src/req/requirements.txt -c /src/req/constraints.txt \
 && servegate-pip-install --no-deps -r /src/req/tfs-api.txt

# servegate itself (its dependencies are already there).
COPY pyproject.toml README.md /src/
COPY servegate /src/servegate
RUN servegate-pip-install --no-deps --no-build-isolation /src \
 && rm -rf /src /usr/local/bin/servegate-pip-install \
 && export HOME=/tmp/smoke-home \
 && python -c "import servegate.serving, servegate.flows.engine, prefect, tensorflow_serving.apis" \
 && servegate --help >/dev/null && prefect --version >/dev/null \
 && rm -rf /tmp/smoke-home

USER servegate
WORKDIR /work
# TensorFlow Serving's ports, for `python -m servegate.serving --port=8500 --rest_api_port=8501 --bind_address=0.0.0.0`.
EXPOSE 8500 8501
CMD ["servegate", "--help"]
