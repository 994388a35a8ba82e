# expect: IB102 line 5
FROM golang:1.22 AS build
WORKDIR /src
ARG VERSION=dev
ARG BUILD_DATE
ENV BUILD_DATE=${BUILD_DATE}
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-X main.version=${VERSION} -X main.date=${BUILD_DATE}" -o /out/app .
