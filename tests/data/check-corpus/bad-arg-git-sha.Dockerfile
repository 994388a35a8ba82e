# expect: IB102 line 4
FROM node:20
WORKDIR /app
ARG GIT_SHA
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
RUN npm run build
LABEL org.opencontainers.image.revision=$GIT_SHA
