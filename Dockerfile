# The hub itself (the model servers it starts run beside it, one environment per version).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 AIDHUB_HOME=/data
RUN useradd --create-home --uid 1000 aidhub && mkdir /data && chown aidhub /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cli cli
COPY hub hub
COPY monitor monitor
COPY registry registry
COPY runners runners
COPY web web
RUN pip install --no-cache-dir .

USER aidhub
VOLUME /data
EXPOSE 8000
CMD ["aid", "serve", "--host", "0.0.0.0", "--port", "8000"]
