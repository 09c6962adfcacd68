# syntax=docker/dockerfile:1
# The tag names go.mod's Go version: an older cached golang:1.26 image fails
# the build, as the image sets GOTOOLCHAIN=local. GOTOOLCHAIN=auto lets a
# later go.mod bump fetch its toolchain instead of failing the same way.
FROM golang:1.26.8-bookworm AS build
ENV GOTOOLCHAIN=auto
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/onboard ./cmd/onboard

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/onboard /usr/local/bin/onboard
USER nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/onboard"]
CMD ["api"]
