# The hub itself: `aid serve` on port 8000, its data (AIDHUB_HOME) in the /data volume. The model servers
# it starts run beside it, one environment per version.
# Installs offline from a wheelhouse of the hub's runtime dependencies in the build context: build with
# scripts/hub-image.sh (or `make hub-image`), which fills .cache/hub-wheels and then builds.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# The base's own Python 3.11, found on its PATH (python:3.11-slim: /usr/local/bin; aidhub/base: /opt/aid/bin,
# whose venv points at /usr/bin/python3.11). The hub gets a venv of its own next to it.
ARG PYTHON=python3
ARG WHEELS=.cache/hub-wheels
RUN ${PYTHON} -m venv /opt/hub
# Dependencies first: this layer is reused until the wheelhouse changes.
COPY ${WHEELS} /wheels
RUN /opt/hub/bin/pip install --no-cache-dir --no-index --find-links /wheels -r /wheels/requirements.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cli cli
COPY database database
COPY hub hub
COPY monitor monitor
COPY registry registry
COPY runners runners
COPY vocab vocab
COPY web web
RUN /opt/hub/bin/pip install --no-cache-dir --no-index --find-links /wheels --no-deps . \
 && /opt/hub/bin/aid --help >/dev/null

FROM ${BASE_IMAGE}
ENV PATH=/opt/hub/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AIDHUB_HOME=/data
RUN useradd --create-home --uid 1000 aidhub && mkdir /data && chown aidhub /data
COPY --from=build /opt/hub /opt/hub

USER aidhub
VOLUME /data
EXPOSE 8000
CMD ["aid", "serve", "--host", "0.0.0.0", "--port", "8000", "-v"]
