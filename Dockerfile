# Ferry in a container: a static binary on a distroless base, run as a
# non-root user, data in a volume.
#   docker build -t ferry .
#   docker run -p 1883:1883 -p 9876:9876 -p 10911:10911 -p 8080:8080 -v ferry-data:/var/lib/ferry ferry
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
# go.mod replaces the MQTT engine with the fork in third_party (see its README.md).
COPY third_party ./third_party
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/ferry ./cmd/ferry \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/mqtt-device ./examples/mqtt-device \
 && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/service-consumer ./examples/service-consumer \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ferry /out/mqtt-device /out/service-consumer /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /var/lib/ferry
USER 65532:65532
VOLUME /var/lib/ferry
WORKDIR /var/lib/ferry
EXPOSE 9876 10911 1883 8083 8883 8080
HEALTHCHECK --interval=10s --timeout=5s --retries=6 CMD ["ferry", "health"]
ENTRYPOINT ["ferry"]
CMD ["serve", "--data-dir", "/var/lib/ferry"]
