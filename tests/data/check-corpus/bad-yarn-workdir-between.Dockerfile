# expect: IB101 line 4
# expect: IB201 line 6
FROM node:20-alpine AS build
COPY . /src
WORKDIR /src
RUN yarn install --frozen-lockfile
RUN yarn build

FROM nginx:1.27-alpine
COPY --from=build /src/dist /usr/share/nginx/html
