# expect: IB101 line 5
FROM ghcr.io/astral-sh/uv:python3.12-bookworm-slim
WORKDIR /app
# The whole project, then the environment: every code change resolves and installs again.
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen
CMD ["uv", "run", "app"]
