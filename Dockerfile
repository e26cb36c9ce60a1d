# bulkfetch as a one-shot job:
#   docker build -t bulkfetch .
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD:/data" bulkfetch urls.txt -o out/
#   (--user: the files in out/ are yours, not uid 10001's)
#   docker build --build-arg EXTRAS=s3 -t bulkfetch:s3 .     # with --out s3://BUCKET/PREFIX
# `docker stop` sends SIGTERM: bulkfetch stops in-flight work, flushes the manifest and the
# state, and exits 143 well inside the default 10 s grace period.

FROM python:3.12-slim AS build
ARG EXTRAS=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/bulkfetch \
 && /opt/bulkfetch/bin/pip install --no-cache-dir --disable-pip-version-check \
      ".${EXTRAS:+[$EXTRAS]}"

FROM python:3.12-slim
COPY --from=build /opt/bulkfetch /opt/bulkfetch
RUN useradd --create-home --uid 10001 bulkfetch
ENV PATH="/opt/bulkfetch/bin:$PATH" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER bulkfetch
WORKDIR /data
# Exec form: bulkfetch is PID 1 and gets SIGTERM itself (it installs its own handlers).
ENTRYPOINT ["bulkfetch"]
CMD ["--help"]
