# syntax=docker/dockerfile:1
# check=skip=JSONArgsRecommended
FROM python:3.12-slim AS base
ONBUILD COPY . /app
ONBUILD RUN pip install -r /app/requirements.txt
COPY --chmod=755 entrypoint.sh /usr/local/bin/
ARG BUILD_DATE
LABEL org.opencontainers.image.created=$BUILD_DATE
ENTRYPOINT ["entrypoint.sh"]
