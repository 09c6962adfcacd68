package store

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
)

// BulkTx is a transaction on one connection of its own, in which the store's
// bulk inserts (InsertCustomers, InsertInvitations, InsertDeliveries) load
// rows with Postgres COPY instead of a multi-row INSERT: an import writes
// several tables per row, and COPY is several times cheaper per row. On
// SQLite it is a plain transaction.
type BulkTx struct {
	bun.Tx
	conn *sql.Conn
}

// RunInBulkTx runs fn in a BulkTx, committing when fn returns nil.
func RunInBulkTx(ctx context.Context, db *bun.DB, fn func(ctx context.Context, tx *BulkTx) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return fn(ctx, &BulkTx{Tx: tx, conn: conn.Conn})
	})
}

// copyRows loads rows with COPY when db is a Postgres BulkTx; it reports
// false, doing nothing, otherwise. COPY runs on the transaction's own
// connection, so it is part of the transaction.
func copyRows(ctx context.Context, db bun.IDB, table string, columns []string, rows [][]any) (bool, error) {
	b, ok := db.(*BulkTx)
	if !ok || DialectOfDB(b.Tx) != Postgres {
		return false, nil
	}
	err := b.conn.Raw(func(driverConn any) error {
		c, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return errors.New("bulk insert: the Postgres driver is not pgx")
		}
		_, err := c.Conn().CopyFrom(ctx, pgx.Identifier{table}, columns, pgx.CopyFromRows(rows))
		return err
	})
	return true, err
}

// Values for COPY's binary encoding: pgx encodes [16]byte as uuid, nil as
// NULL.
func pgUUID(id uuid.UUID) any { return [16]byte(id) }

func pgNullUUID(id uuid.NullUUID) any {
	if !id.Valid {
		return nil
	}
	return [16]byte(id.UUID)
}

func pgTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC()
}

func pgNullInt(n int) any {
	if n == 0 {
		return nil
	}
	return int32(n)
}
