# syntax=docker/dockerfile:1
# The llmops-stack image: one image for every `llmops` command (gateway, monitors, simulate, gpu-exporter).
#   docker build -t llmops-stack:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/deploy/config.yaml:/etc/llmops/config.yaml:ro" llmops-stack:0.1.0 \
#       gateway --config /etc/llmops/config.yaml
# Python dependencies are pinned by deploy/constraints.txt (regenerate it with deploy/freeze_constraints.py).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/llmops
WORKDIR /src
COPY deploy/constraints.txt /tmp/constraints.txt
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY llmops ./llmops
COPY monitors ./monitors
RUN /opt/llmops/bin/pip install --no-cache-dir --constraint /tmp/constraints.txt . \
    && /opt/llmops/bin/pip uninstall -y pip setuptools wheel \
    && find /opt/llmops -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="llmops-stack" \
      org.opencontainers.image.description="LLMOps monitoring stack: OpenAI-compatible gateway, monitors, simulator, GPU exporter" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/llmops/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
RUN groupadd --system --gid 10001 llmops \
    && useradd --system --uid 10001 --gid llmops --home-dir /home/llmops --create-home --shell /usr/sbin/nologin llmops
COPY --from=build /opt/llmops /opt/llmops
USER 10001:10001
WORKDIR /home/llmops
# gateway, monitors metrics, simulator, gpu-exporter
EXPOSE 8080 9101 8000 9835
ENTRYPOINT ["llmops"]
CMD ["--help"]
