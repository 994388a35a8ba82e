FROM node:20-alpine AS build
WORKDIR /src
COPY package.json yarn.lock .yarnrc.yml ./
RUN --mount=type=cache,target=/usr/local/share/.cache/yarn yarn install --frozen-lockfile
COPY src/ src/
RUN yarn build

FROM nginx:1.27-alpine
COPY --from=build /src/dist /usr/share/nginx/html
