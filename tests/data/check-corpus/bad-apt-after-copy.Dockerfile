# expect: IB101 line 4
FROM debian:bookworm-slim
WORKDIR /opt/tool
COPY . .
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
CMD ["./run.sh"]
