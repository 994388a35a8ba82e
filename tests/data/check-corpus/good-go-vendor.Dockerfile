FROM golang:1.22 AS build
WORKDIR /src
# Modules are vendored: the build downloads nothing, so copying everything first costs no download.
COPY . .
RUN --mount=type=cache,target=/root/.cache/go-build go build -mod=vendor -o /out/app ./cmd/app
