# RUnet inference image for FLARE 2021: the organizers run
#   docker container run --gpus "device=0" --name runet --rm -v $PWD/inputs/:/workspace/inputs/ \
#       -v $PWD/outputs/:/workspace/outputs/ runet:latest /bin/bash -c "sh predict.sh"
# and the default command (sh predict.sh) does the same. The image holds requirements.txt, niftiio/, inference/,
# weights/ and predict.sh only (.dockerignore keeps everything else out of the build context), and in
# /opt/runet/cache the network converted for the CPU backend; it needs
# no network at run time and downloads nothing when it starts. See docs/container.md.
#
# torch, with its CUDA build, comes from the base image: pip installs the other requirements under a
# constraint that pins torch to the base image's version, so no second torch can come in.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda12.6-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /workspace

COPY requirements.txt ./
RUN python -c 'import torch; print("torch==" + torch.__version__)' > /tmp/torch-constraint.txt \
    && grep -v -E '^torch([=<>!~ ;]|$)' requirements.txt > /tmp/requirements-image.txt \
    && pip install --no-cache-dir -c /tmp/torch-constraint.txt -r /tmp/requirements-image.txt \
    && test "$(python -c 'import torch; print("torch==" + torch.__version__)')" = "$(cat /tmp/torch-constraint.txt)" \
    && rm /tmp/torch-constraint.txt /tmp/requirements-image.txt

COPY predict.sh ./
COPY weights/ weights/
COPY niftiio/ niftiio/
COPY inference/ inference/

# The OpenVINO conversion of the shipped network, made once here, so that a fresh container on a machine without
# a GPU starts its first case without converting (GPU runs never use it).
ENV RUNET_CACHE_DIR=/opt/runet/cache
RUN python -m inference.warm_cache

CMD ["sh", "predict.sh"]
