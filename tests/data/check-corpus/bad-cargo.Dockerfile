# expect: IB101 line 4
FROM rust:1.79 AS build
WORKDIR /usr/src/app
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release

FROM debian:bookworm-slim
COPY --from=build /usr/src/app/target/release/app /usr/local/bin/app
CMD ["app"]
