# syntax=docker/dockerfile:1.7
# expect: IB101 line 6
FROM node:22
RUN corepack enable
WORKDIR /repo
COPY --link . .
RUN --mount=type=cache,target=/root/.local/share/pnpm/store <<EOF
set -eux
pnpm install --frozen-lockfile
pnpm -r build
EOF
CMD ["pnpm", "start"]
