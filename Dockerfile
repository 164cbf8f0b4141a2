# syntax=docker/dockerfile:1
# Static rserpool binary on a distroless base, running as an unprivileged user.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
	-o /out/rserpool ./cmd/rserpool

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/rserpool /rserpool
USER 65532:65532
# ASAP (TCP mapping), ENRP (TCP mapping), proxy listener, admin/metrics.
EXPOSE 3863 9901 8080 9464
ENTRYPOINT ["/rserpool"]
