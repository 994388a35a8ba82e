FROM gradle:8.8-jdk21 AS build
WORKDIR /home/gradle/project
COPY settings.gradle.kts build.gradle.kts gradle.properties ./
RUN --mount=type=cache,target=/root/.gradle gradle dependencies --no-daemon
COPY src ./src
RUN --mount=type=cache,target=/root/.gradle gradle bootJar --no-daemon --offline
