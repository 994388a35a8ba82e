# expect: IB101 line 3
FROM alpine:3.20
COPY . /work
WORKDIR /work
RUN xargs apk add --no-cache < apk-packages.txt
CMD ["sh", "entry.sh"]
