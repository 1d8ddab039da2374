# The stockpulse project image: the command line (`python -m jobs ...`) for the compose services
# deploy, scheduler and kibana-setup, with the Lambda artifacts built in at image build time so
# `deploy --artifacts /opt/stockpulse/lambda` needs no network when it runs.
#
#   docker build -t stockpulse:local .        (docker compose up -d --build does this)
#
# Python 3.12 = the functions' Lambda runtime (python3.12), so the image runs what they run.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /opt/stockpulse/src

# 1. Dependencies alone, from pyproject.toml's [project].dependencies: this layer is rebuilt only
#    when pyproject.toml changes, not on every source edit.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# 2. The project itself (no dependency resolution: they are all in the layer above), installed
#    in place (--editable): `package` fingerprints the handlers/ files and jobs/lambda/*.txt it
#    builds from, and `deploy` compares that fingerprint with the one it computes at run time, so
#    both must read the very same files, here, whatever the wheel's package data holds.
COPY README.md ./
COPY handlers ./handlers
COPY jobs ./jobs
RUN pip install --no-deps --editable .

# 3. The Lambda artifacts (handlers.zip, forecast.zip) for the python3.12 runtime: pip downloads
#    the pinned manylinux wheels now, at build time; deploy --artifacts finds them up to date.
RUN python -m jobs package --out /opt/stockpulse/lambda --python 3.12

# 4. Run as an unprivileged user; nothing in the image is writable by it but its home.
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin stockpulse
USER stockpulse
WORKDIR /home/stockpulse

ENTRYPOINT ["python", "-m", "jobs"]
CMD ["--help"]
