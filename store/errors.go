package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinels callers branch on with errors.Is.
var (
	ErrNotFound       = errors.New("not found")
	ErrEmailInUse     = errors.New("Provided email address is already in use")
	ErrAccountInUse   = errors.New("account number already belongs to another customer")
	ErrAlreadyInvited = errors.New("the customer's initial contact has already been invited")
	ErrNotInvitable   = errors.New("customer cannot be invited")
	ErrInvalidState   = errors.New("invalid state for this operation")
	ErrTokenGone      = errors.New("invitation link is no longer valid")
	ErrDeliveryLeased = errors.New("delivery is being sent by another worker")
)

// uniqueViolation reports whether err is a unique-constraint violation and, if
// it is, names the constraint (Postgres) or the columns (SQLite), so callers
// can map it to the right sentinel.
func uniqueViolation(err error) (string, bool) {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		if pgErr.Code == "23505" {
			return pgErr.ConstraintName, true
		}
		return "", false
	}
	// modernc.org/sqlite: "constraint failed: UNIQUE constraint failed: t.a, t.b (2067)"
	msg := err.Error()
	if i := strings.Index(msg, "UNIQUE constraint failed: "); i >= 0 {
		rest := msg[i+len("UNIQUE constraint failed: "):]
		if j := strings.Index(rest, " ("); j >= 0 {
			rest = rest[:j]
		}
		return rest, true
	}
	return "", false
}

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// Unavailable tells a database that could not be reached (a connection
// refused, timed out or lost on the way) from a query that failed: the
// first is an outage to wait out, the second a fault.
func Unavailable(err error) bool {
	var connect *pgconn.ConnectError
	var netErr net.Error
	var pgErr *pgconn.PgError
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// A request given up on, or one that took too long: not an outage.
		return false
	case errors.As(err, &pgErr):
		// The server answered: a wrong password, a database that does not
		// exist, a query refused. Configuration or a fault, not an outage.
		return false
	case errors.As(err, &connect), errors.As(err, &netErr),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, io.ErrUnexpectedEOF):
		return true
	}
	return pgconn.SafeToRetry(err)
}
