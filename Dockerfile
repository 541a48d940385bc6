# syntax=docker/dockerfile:1
# The same image as `make image` (which needs no Docker engine): a static binary on a
# distroless base, user 65532, no shell. Build: docker build -t tokenizer:dev .
#   --build-arg VERSION=$(git describe --tags --always) --build-arg REVISION=$(git rev-parse HEAD)

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
ARG REVISION=unknown
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/phivault/tokenizer/internal/cli.buildVersion=${VERSION} -X github.com/phivault/tokenizer/internal/cli.buildCommit=${REVISION}" \
      -o /out/tokenizer ./cmd/tokenizer

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata; no shell,
# no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=devel
ARG REVISION=unknown
LABEL org.opencontainers.image.title="tokenizer" \
      org.opencontainers.image.source="https://github.com/phivault/tokenizer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/tokenizer /usr/local/bin/tokenizer
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 9090 8080 9102
ENTRYPOINT ["/usr/local/bin/tokenizer"]
CMD ["serve"]
