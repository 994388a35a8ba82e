# expect: IB101 line 5
FROM node:20 AS frontend
WORKDIR /repo
# The monorepo's frontend lives in web/; the install runs there.
COPY . .
RUN --mount=type=cache,target=/root/.npm cd web && npm ci && npm run build
