# syntax=docker/dockerfile:1.7
# escape=\
FROM node:22 AS base
RUN corepack enable
WORKDIR /repo
COPY pnpm-lock.yaml ./
RUN --mount=type=cache,id=pnpm,target=/root/.local/share/pnpm/store pnpm fetch
COPY . .
RUN --mount=type=cache,id=pnpm,target=/root/.local/share/pnpm/store <<EOF
set -eux
pnpm install --offline --frozen-lockfile
pnpm -r build
EOF
CMD ["pnpm", "start"]
