# expect: IB101 line 5
# expect: IB201 line 6
FROM node:20-slim
WORKDIR /app
COPY . .
RUN npm ci && npm run build
CMD ["node", "dist/server.js"]
