# The grader as a Gradescope custom image (Configure Autograder -> Manual Docker configuration).
#
#   grader container build            # or: docker build -t dl-autograder .
#   docker tag dl-autograder:latest DOCKERHUB_USER/dl-autograder:p1 && docker push ...
#
# The real PROPS archive: put Progress-Objects-Sample.tar.gz in gradescope/props/ before the
# build (or --build-arg PROPS_ARCHIVE=<file name in gradescope/props/>). Only the grading cache
# built from it reaches the image; without it the SYNTHETIC stand-in is used, and labelled.
# No CMD/ENTRYPOINT: the platform runs /autograder/run_autograder itself.

# Ubuntu 22.04, system Python 3.10 (the platform's harness uses it: it is not replaced)
FROM gradescope/autograder-base:ubuntu-22.04 AS base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV GRADER_VENV=/opt/grader-venv \
    GRADER_CONTAINER=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LANG=C.UTF-8 \
    LC_ALL=C.UTF-8

# python3-venv comes from the base image's own Ubuntu archive; pinning its exact Debian
# revision would break the build at the next security update
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
COPY gradescope/requirements.txt /opt/grader-src/requirements.txt
# torch alone from the CPU index (the PyPI build pulls GBs of CUDA), then the pinned rest
RUN python3 -m venv "$GRADER_VENV" \
    && grep -E '^torch==' /opt/grader-src/requirements.txt \
       | xargs "$GRADER_VENV/bin/pip" install --no-cache-dir --no-deps --index-url "$TORCH_INDEX" \
    && "$GRADER_VENV/bin/pip" install --no-cache-dir -r /opt/grader-src/requirements.txt

COPY pyproject.toml README.md /opt/grader-src/
COPY grader/ /opt/grader-src/grader/
RUN "$GRADER_VENV/bin/pip" install --no-cache-dir --no-deps /opt/grader-src \
    && "$GRADER_VENV/bin/pip" check \
    && rm -rf /opt/grader-src

# ---- the PROPS cache, in a stage of its own so the archive never reaches the final image
FROM base AS props
ARG PROPS_ARCHIVE=Progress-Objects-Sample.tar.gz
ARG PROPS_ARCHIVE_MD5=
COPY gradescope/props/ /tmp/props/
RUN "$GRADER_VENV/bin/python" -m grader.deploy build-cache \
        --archive "/tmp/props/${PROPS_ARCHIVE}" --md5 "${PROPS_ARCHIVE_MD5}" \
        --out /tmp/props-cache/props-cache.npz

# ---- the image Gradescope runs
FROM base
COPY grader.yaml /autograder/source/grader.yaml
COPY test_specs/ /autograder/source/test_specs/
COPY reference/ /autograder/source/reference/
COPY student_template/ /autograder/source/student_template/
COPY --from=props /tmp/props-cache/ /autograder/source/data/
COPY gradescope/run_autograder /autograder/run_autograder

# the unprivileged user student code runs as; reference, specs and data stay root-only
RUN useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin grader-student \
    && "$GRADER_VENV/bin/python" -m grader.deploy configure /autograder/source --sandbox-user grader-student \
    && chmod 755 /autograder/run_autograder \
    && chmod -R go-rwx /autograder/source

WORKDIR /autograder
