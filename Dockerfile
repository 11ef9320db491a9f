# A static firehose binary on a distroless base.
#   docker build -t firehose .
#   docker run --rm -v $PWD/firehose.yaml:/etc/firehose/firehose.yaml firehose run -c /etc/firehose/firehose.yaml
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/firehose ./cmd/firehose

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/firehose /usr/local/bin/firehose
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/firehose"]
# Listen on every interface, so probes and scrapes from outside reach it
# (api.listen's default, 127.0.0.1:8080, suits a process on a host).
CMD ["run", "-c", "/etc/firehose/firehose.yaml", "--listen", "0.0.0.0:8080"]
