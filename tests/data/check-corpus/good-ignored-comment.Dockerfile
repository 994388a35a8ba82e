FROM node:20
WORKDIR /app
# The generator needs the whole tree before installing: accepted.
# imgbuild: ignore=IB101
COPY . .
RUN npm ci # imgbuild: ignore=IB201
