# expect: IB101 line 5
# expect: IB201 line 8
FROM node:20 AS source
WORKDIR /app
COPY . .

FROM source AS deps
RUN npm install

FROM node:20-slim
COPY --from=deps /app/node_modules /app/node_modules
