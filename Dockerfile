# attnviz app image: CPU by default, slim (CPU-only torch wheels), non-root, health-checked.
#
#   docker build -t attnviz .
#   docker run --rm -p 8501:8501 attnviz                       # open http://localhost:8501
#
# CUDA: the package index's torch wheels carry their own CUDA libraries, so a CUDA image only
# needs those wheels (and `docker run --gpus all`); BASE_IMAGE may name a CUDA base image too:
#   docker build -t attnviz:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .
#   docker run --rm --gpus all -p 8501:8501 attnviz:cuda
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ATTNVIZ_OFFLINE=1 \
    STREAMLIT_BROWSER_GATHER_USAGE_STATS=false \
    STREAMLIT_SERVER_HEADLESS=true

RUN useradd --create-home --uid 10001 attnviz
WORKDIR /app

# torch/torchvision first from the chosen index (CPU wheels by default), then the rest;
# requirements.txt pins the same versions, which the installed pair already satisfies.
COPY requirements.txt ./
RUN pip install --index-url "${TORCH_INDEX}" torch==2.15.0 torchvision==0.29.2 \
 && pip install -r requirements.txt

COPY pyproject.toml README.md app.py ./
COPY attnviz ./attnviz
COPY assets ./assets
COPY .streamlit ./.streamlit
# setuptools builds in the source tree: drop its build/ and egg-info, which the image never uses.
RUN pip install --no-deps . && rm -rf build attnviz.egg-info && chown -R attnviz:attnviz /app

USER attnviz
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4).status != 200)"
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
