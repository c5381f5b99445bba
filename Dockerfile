# The image that services/rayjob.yaml and services/ray-cluster.yaml run: mixopt, Ray and a CPU torch.
#   docker build -t mixopt:latest .
#   GPU nodes (mixopt train --device cuda): --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# Every node of a Ray cluster needs the same image (Ray's and Python's versions must match).
FROM python:3.11-slim-bookworm

# wget: KubeRay's health probes call it. Nothing else from apt is installed: `mixopt corpus build`
# fetches its Debian sources with `apt-get download` (after one `apt-get update`) at build time.
RUN apt-get update && apt-get install -y --no-install-recommends wget && rm -rf /var/lib/apt/lists/*

# torch's wheels on PyPI are CUDA builds (several GB); the CPU index serves the same version without.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 MIXOPT_HOME=/data/mixopt

# An editable install in /opt/mixopt, as the README's; the recipes ship inside the package
# (mixopt/recipes/). The workspace (built corpora, run store, searches) is MIXOPT_HOME, a volume.
WORKDIR /opt/mixopt
COPY pyproject.toml constraints.txt README.md ./
COPY mixopt ./mixopt
RUN pip install --extra-index-url "$TORCH_INDEX" -c constraints.txt -e . \
    && mixopt --version
