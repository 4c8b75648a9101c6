# Phoenix: ComfyUI + FLUX for RunPod GPU pods (RTX 5090 / Blackwell ready).
#
# Every ARG default below equals the same key in config/versions.conf, the one source of truth
# (tests/docker/test_dockerfile.py fails when they drift), except the three source arguments
# BASE_IMAGE, FILEBROWSER_URL and PIP_INDEX_URL, whose defaults are the public sources built
# from those keys. Build with the defaults:
#   docker build -t phoenix .
# (buildah/podman: add --format docker, or the OCI format drops the HEALTHCHECK.)
# Behind a mirror, or hermetically, override the sources; every input is still verified:
# the base by its tag, ComfyUI against COMFYUI_COMMIT, FileBrowser against FILEBROWSER_SHA256.
# docker/rehearse.py builds and runs the image this way from local inputs (docs/image.md).
# No secret is ever passed as a build argument: tokens and passwords arrive at run time as
# environment variables and are read by `phoenix run`, never baked into a layer.
#
# Layer order, slowest-changing first: base, OS packages, user, FileBrowser, constraints,
# ComfyUI and its requirements, Phoenix's dependencies, then Phoenix's code. A change to
# Phoenix's code rebuilds only the last layers.

# NGC PyTorch 25.03: CUDA 12.8.1 (native sm_120 kernels, host driver >= 570), Python 3.12,
# and the pip constraint file /etc/pip/constraint.txt. See docs/image.md for why this tag.
ARG NGC_PYTORCH_TAG=25.03-py3
# BASE_IMAGE is the same image under another name (a mirror, a local stand-in); hadolint cannot
# see through the variable, so DL3026 (trusted registries: nvcr.io) is checked by
# tests/docker/test_dockerfile.py instead, which requires this default to be the NGC tag.
ARG BASE_IMAGE=nvcr.io/nvidia/pytorch:${NGC_PYTORCH_TAG}
# hadolint ignore=DL3026
FROM ${BASE_IMAGE}

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# No bytecode files on disk (REQUIREMENTS: "Disabled ... Python bytecode generation"); logs
# unbuffered so RunPod's log view shows lines as they happen. PHOENIX_IN_IMAGE lets
# `phoenix cleanup` clean home-level files (pip/uv caches, token file, histories) by default.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PHOENIX_IN_IMAGE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini reaps zombies and forwards signals to `phoenix run` as PID 1's child. Versions are not
# pinned here: Ubuntu's archive drops superseded package versions, so an exact pin breaks the
# build; apt verifies every package against the archive's signed hashes (see .hadolint.yaml).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      tini git ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

# The non-root user every service runs as. UID 1000 is taken by Ubuntu's `ubuntu` user.
RUN groupadd --system --gid 10001 sduser \
 && useradd --uid 10001 --gid sduser --create-home --home-dir /home/sduser \
      --shell /usr/sbin/nologin sduser

# FileBrowser, verified against the pinned SHA256 before it is unpacked. FILEBROWSER_URL may
# point at a mirror or a local file (file://); the archive must still match the SHA256.
ARG FILEBROWSER_VERSION=v2.63.23
ARG FILEBROWSER_SHA256=b14db2bb8033caa3f80205eb6578b2ed0744ebd9e716b790bc4a9703ce909e88
ARG FILEBROWSER_URL=https://github.com/filebrowser/filebrowser/releases/download/${FILEBROWSER_VERSION}/linux-amd64-filebrowser.tar.gz
RUN curl -fsSL --retry 3 -o /tmp/filebrowser.tar.gz "${FILEBROWSER_URL}" \
 && echo "${FILEBROWSER_SHA256}  /tmp/filebrowser.tar.gz" | sha256sum -c - \
 && tar -xzf /tmp/filebrowser.tar.gz -C /usr/local/bin filebrowser \
 && rm /tmp/filebrowser.tar.gz \
 && filebrowser version

# Constraints: NGC's /etc/pip/constraint.txt plus /etc/phoenix/constraints.txt (the installed
# torch/CUDA stack pinned exactly, and the Python pins of versions.conf that NGC does not
# already pin). PIP_CONSTRAINT makes every later `pip install` honour both, at build time and
# at run time (custom node requirements, EXTRA_PYTHON_PACKAGES): torch is never replaced.
ARG TRANSFORMERS_VERSION=4.57.1
ARG HUGGINGFACE_HUB_VERSION=0.35.3
ARG SAFETENSORS_VERSION=0.6.2
ARG NVIDIA_ML_PY_VERSION=12.570.172
ARG PYDANTIC_VERSION=2.11.10
ARG RUAMEL_YAML_VERSION=0.18.15
COPY docker/constraints.py /opt/phoenix-build/constraints.py
RUN python /opt/phoenix-build/constraints.py write /etc/phoenix/constraints.txt \
      --base /etc/pip/constraint.txt \
      --pin "transformers==${TRANSFORMERS_VERSION}" \
      --pin "huggingface-hub==${HUGGINGFACE_HUB_VERSION}" \
      --pin "safetensors==${SAFETENSORS_VERSION}" \
      --pin "nvidia-ml-py==${NVIDIA_ML_PY_VERSION}" \
      --pin "pydantic==${PYDANTIC_VERSION}" \
      --pin "ruamel.yaml==${RUAMEL_YAML_VERSION}" \
 && touch /etc/pip/constraint.txt
ENV PIP_CONSTRAINT="/etc/pip/constraint.txt /etc/phoenix/constraints.txt"
# Where the build's pip installs come from (an ARG: build time only, never in the image's
# environment). A mirror or a local PEP 503 index (file://) works; never put a credential in
# it, since build arguments are recorded in the image's history.
ARG PIP_INDEX_URL=https://pypi.org/simple

# ComfyUI at the pinned commit. Git checks every object against its hash, and the checked-out
# HEAD must equal the pinned 40-hex commit, so the tree is content-verified.
ARG COMFYUI_REPO=https://github.com/Comfy-Org/ComfyUI.git
ARG COMFYUI_COMMIT=59afc3984868289f808d02fa5cd180edfb2de240
ARG COMFYUI_VERSION=0.3.77
# Owned by sduser: `phoenix run` drops to it before apply, which may move the checkout to a
# manifest's comfyui.ref (git refuses to work in a repository another user owns).
RUN git init -q /opt/ComfyUI \
 && git -C /opt/ComfyUI remote add origin "${COMFYUI_REPO}" \
 && git -C /opt/ComfyUI fetch -q --depth 1 origin "${COMFYUI_COMMIT}" \
 && git -C /opt/ComfyUI checkout -q --detach FETCH_HEAD \
 && test "$(git -C /opt/ComfyUI rev-parse HEAD)" = "${COMFYUI_COMMIT}" \
 && python /opt/phoenix-build/constraints.py requirements \
      /opt/ComfyUI/requirements.txt /opt/phoenix-build/comfyui-requirements.txt \
 && pip install --no-cache-dir -r /opt/phoenix-build/comfyui-requirements.txt \
 && torch_now="torch==$(python -c 'import importlib.metadata as m; print(m.version("torch"))')" \
 && grep -qxF "${torch_now}" /etc/phoenix/constraints.txt \
 && chown -R sduser:sduser /opt/ComfyUI \
 && echo "ComfyUI ${COMFYUI_VERSION} at ${COMFYUI_COMMIT}; ${torch_now} unchanged"

# Phoenix's dependencies, from pyproject.toml alone: code changes do not reinstall them.
# The last use of the build helpers: /opt/phoenix-build goes, nothing at run time needs it.
COPY pyproject.toml /opt/phoenix/pyproject.toml
RUN python /opt/phoenix-build/constraints.py pyproject-deps \
      /opt/phoenix/pyproject.toml /opt/phoenix-build/phoenix-requirements.txt \
 && pip install --no-cache-dir -r /opt/phoenix-build/phoenix-requirements.txt \
 && rm -rf /opt/phoenix-build

# Phoenix itself, editable from /opt/phoenix: it finds manifests/, schemas/ and config/ beside
# the package (provisioner/core/resources.py). Its modules are compiled here, like every package pip
# installed above: with PYTHONDONTWRITEBYTECODE=1 nothing is written at run time, so without
# this every `phoenix` command would compile Phoenix from source again (~0.09 s of each start).
COPY README.md /opt/phoenix/README.md
COPY config /opt/phoenix/config
COPY manifests /opt/phoenix/manifests
COPY schemas /opt/phoenix/schemas
COPY examples /opt/phoenix/examples
COPY provisioner /opt/phoenix/provisioner
RUN pip install --no-cache-dir --no-deps --no-build-isolation -e /opt/phoenix \
 && python -m compileall -q /opt/phoenix/provisioner \
 && phoenix --version

# ComfyUI 8188, FileBrowser 8080, Phoenix health API 8189 (/healthz, /readyz, /status).
EXPOSE 8188 8080 8189

# /healthz is liveness: it answers as soon as `phoenix run` has started its health server,
# also while models are still downloading.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "--max-time", "4", "-o", "/dev/null", "http://127.0.0.1:8189/healthz"]

WORKDIR /workspace

# No USER instruction, on purpose: the entry starts as root only long enough for `phoenix run`
# to prepare the workspace root (create it, chown it to sduser on an ephemeral disk or a fresh
# volume, umask 077, core dumps off), then drops to sduser (uid 10001) before any download or
# service starts. ComfyUI, FileBrowser and every download run as sduser, never as root.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "phoenix"]
CMD ["run"]
