FROM rust:1.79 AS build
WORKDIR /usr/src/app
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry mkdir -p src && touch src/main.rs && cargo fetch
COPY src ./src
RUN --mount=type=cache,target=/usr/local/cargo/registry cargo build --release --offline

FROM debian:bookworm-slim
COPY --from=build /usr/src/app/target/release/app /usr/local/bin/app
