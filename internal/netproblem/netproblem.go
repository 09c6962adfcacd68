// Package netproblem words a failure to reach another service (a
// timeout, a refused connection, a name that does not resolve) without its
// address: what is shown to a tenant names the kind of failure, never the
// URLs and hosts of onboard's own configuration.
package netproblem

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"syscall"
)

// Describe names the kind of a transport failure in words that carry no
// address: " (timeout)", " (connection refused)", or "".
func Describe(err error) string {
	var netErr net.Error
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var recordErr tls.RecordHeaderError
	switch {
	case errors.Is(err, context.Canceled):
		return " (the request was cancelled)"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return " (timeout)"
	case errors.As(err, &dnsErr):
		return " (its host name does not resolve)"
	case errors.Is(err, syscall.ECONNREFUSED):
		return " (connection refused)"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return " (connection reset)"
	case errors.As(err, &certErr), errors.As(err, &recordErr):
		return " (TLS handshake failed)"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return " (connection closed)"
	}
	return ""
}
