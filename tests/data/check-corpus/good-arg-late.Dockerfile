ARG NODE_VERSION=20
FROM node:${NODE_VERSION}
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY . .
RUN npm run build
ARG GIT_SHA
LABEL org.opencontainers.image.revision=$GIT_SHA
RUN echo "$GIT_SHA" > /app/REVISION
