# expect: IB101 line 4
FROM gradle:8.8-jdk21 AS build
WORKDIR /home/gradle/project
COPY --chown=gradle:gradle . .
RUN --mount=type=cache,target=/root/.gradle gradle bootJar --no-daemon

FROM eclipse-temurin:21-jre
COPY --from=build /home/gradle/project/build/libs/*.jar /app.jar
