package store

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// Customer statuses. Only active customers are invited or reminded.
const (
	CustomerActive      = "active"
	CustomerInactive    = "inactive"
	CustomerBlacklisted = "blacklisted"
)

// ERP verification outcomes recorded on a customer.
const (
	ERPUnverified = "unverified"
	ERPVerified   = "verified"
	ERPNotFound   = "not_found"
	ERPError      = "error"
)

// Customer is a vendor's customer company. It carries one or more ERP
// account numbers (customer_accounts) and, through its initial contact's
// invitation, its way into the portal.
type Customer struct {
	bun.BaseModel `bun:"table:customers,alias:c"`

	ID           uuid.UUID `bun:"id,pk,type:uuid"`
	TenantID     uuid.UUID `bun:"tenant_id,type:uuid"`
	CompanyName  string    `bun:"company_name"`
	Phone        string    `bun:"phone"`
	Ranking      string    `bun:"ranking"`
	Status       string    `bun:"status"`
	ERPStatus    string    `bun:"erp_status"`
	ERPName      string    `bun:"erp_name"`
	ERPPriceTier string    `bun:"erp_price_tier"`
	ERPError     string    `bun:"erp_error"`
	ERPCheckedAt time.Time `bun:"erp_checked_at,nullzero"`
	CreatedAt    time.Time `bun:"created_at"`
	UpdatedAt    time.Time `bun:"updated_at"`

	AccountNumbers []string `bun:"-"`
}

// Invitable reports whether the customer may receive invitations or resends.
func (c *Customer) Invitable() bool { return c.Status == CustomerActive }

// CustomerAccount ties an ERP account number to the one customer of a tenant
// that holds it.
type CustomerAccount struct {
	bun.BaseModel `bun:"table:customer_accounts"`

	TenantID      uuid.UUID `bun:"tenant_id,pk,type:uuid"`
	AccountNumber string    `bun:"account_number,pk"`
	CustomerID    uuid.UUID `bun:"customer_id,type:uuid"`
}

// InsertCustomer stores a customer and its account numbers. An account number
// that another customer of the tenant holds is ErrAccountInUse.
func InsertCustomer(ctx context.Context, db bun.IDB, c *Customer) error {
	return InsertCustomers(ctx, db, []*Customer{c})
}

// InsertCustomers stores new customers and their account numbers, a
// statement (or a COPY, in a BulkTx) per table. An account number another
// customer of the tenant holds is ErrAccountInUse.
func InsertCustomers(ctx context.Context, db bun.IDB, cs []*Customer) error {
	if len(cs) == 0 {
		return nil
	}
	accounts := make([]CustomerAccount, 0, len(cs))
	for _, c := range cs {
		if c.ID == uuid.Nil {
			c.ID = uuid.Must(uuid.NewV7())
		}
		if c.Status == "" {
			c.Status = CustomerActive
		}
		if c.ERPStatus == "" {
			c.ERPStatus = ERPUnverified
		}
		for _, n := range c.AccountNumbers {
			accounts = append(accounts, CustomerAccount{TenantID: c.TenantID, AccountNumber: n, CustomerID: c.ID})
		}
	}
	rows := make([][]any, len(cs))
	for i, c := range cs {
		rows[i] = []any{pgUUID(c.ID), pgUUID(c.TenantID), c.CompanyName, c.Phone, c.Ranking, c.Status, c.ERPStatus,
			c.ERPName, c.ERPPriceTier, c.ERPError, pgTime(c.ERPCheckedAt), c.CreatedAt.UTC(), c.UpdatedAt.UTC()}
	}
	copied, err := copyRows(ctx, db, "customers", []string{"id", "tenant_id", "company_name", "phone", "ranking", "status", "erp_status",
		"erp_name", "erp_price_tier", "erp_error", "erp_checked_at", "created_at", "updated_at"}, rows)
	if !copied {
		_, err = db.NewInsert().Model(&cs).Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("insert customers: %w", err)
	}
	if len(accounts) == 0 {
		return nil
	}
	rows = make([][]any, len(accounts))
	for i, a := range accounts {
		rows[i] = []any{pgUUID(a.TenantID), a.AccountNumber, pgUUID(a.CustomerID)}
	}
	copied, err = copyRows(ctx, db, "customer_accounts", []string{"tenant_id", "account_number", "customer_id"}, rows)
	if !copied {
		_, err = db.NewInsert().Model(&accounts).Exec(ctx)
	}
	if err != nil {
		if _, ok := uniqueViolation(err); ok {
			return fmt.Errorf("insert customer accounts: %w", ErrAccountInUse)
		}
		return fmt.Errorf("insert customer accounts: %w", err)
	}
	return nil
}

// GetCustomer loads one of the tenant's customers with its account numbers.
func GetCustomer(ctx context.Context, db bun.IDB, tenantID, id uuid.UUID) (*Customer, error) {
	c := new(Customer)
	err := db.NewSelect().Model(c).Where("tenant_id = ? AND id = ?", tenantID, id).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("customer %s: %w", id, notFound(err))
	}
	if err := loadAccountNumbers(ctx, db, tenantID, []*Customer{c}); err != nil {
		return nil, err
	}
	return c, nil
}

// CustomerByAccount finds the tenant's customer holding an account number.
func CustomerByAccount(ctx context.Context, db bun.IDB, tenantID uuid.UUID, accountNumber string) (*Customer, error) {
	c := new(Customer)
	err := db.NewSelect().Model(c).
		Where("tenant_id = ?", tenantID).
		Where("id = (SELECT customer_id FROM customer_accounts WHERE tenant_id = ? AND account_number = ?)", tenantID, accountNumber).
		Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("customer with account %q: %w", accountNumber, notFound(err))
	}
	return c, nil
}

func loadAccountNumbers(ctx context.Context, db bun.IDB, tenantID uuid.UUID, cs []*Customer) error {
	if len(cs) == 0 {
		return nil
	}
	ids := make([]uuid.UUID, len(cs))
	byID := make(map[uuid.UUID]*Customer, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
		byID[c.ID] = c
		c.AccountNumbers = []string{}
	}
	var rows []CustomerAccount
	q := db.NewSelect().Model(&rows)
	if DialectOfDB(db) == SQLite {
		// With no statistics SQLite prefers the primary key, whose first
		// column is the tenant: it read every account of the tenant (100 ms
		// for 100,000) to find a page's fifty customers' accounts.
		q = q.ModelTableExpr("customer_accounts AS customer_account INDEXED BY customer_accounts_customer")
	}
	err := q.
		Where("tenant_id = ? AND customer_id IN (?)", tenantID, bun.In(ids)).
		Order("account_number").Scan(ctx)
	if err != nil {
		return fmt.Errorf("load account numbers: %w", err)
	}
	for _, r := range rows {
		c := byID[r.CustomerID]
		c.AccountNumbers = append(c.AccountNumbers, r.AccountNumber)
	}
	return nil
}

// CustomerFilter narrows ListCustomers. Zero values do not filter.
type CustomerFilter struct {
	Status        string
	Ranking       string
	CreatedAfter  time.Time
	CreatedBefore time.Time
	Query         string    // company name, account number or contact email contains
	After         uuid.UUID // keyset cursor: the last id of the previous page
	Limit         int
}

// ListCustomers returns one page of the tenant's customers, newest first.
//
// A search (Query) matches a customer whose company name, one of whose
// account numbers or one of whose invitations' emails contains the query,
// case-insensitively. It is asked as three branches, one per table, each the
// first page of the customers it matches, newest first; the page is the
// newest of their union. Each branch is a plain filtered, ordered, limited
// query over one table, so Postgres can answer each on its own from its
// trigram index (a rare term: the few matches, then sorted) or by walking the
// customers newest first until the page is full (a common term), where one
// query ORing the three matches had to walk every customer of the tenant,
// probing two tables for each. The page is the same: any customer among the
// Limit newest of the whole match is among the Limit newest of a branch that
// matched it.
func ListCustomers(ctx context.Context, db bun.IDB, tenantID uuid.UUID, f CustomerFilter) ([]*Customer, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	var cs []*Customer
	q := filterCustomers(db.NewSelect().Model(&cs), "c", tenantID, f)
	if f.Query != "" {
		q = q.Where("c.id IN (SELECT b1.id FROM (?) AS b1 UNION ALL SELECT b2.id FROM (?) AS b2 UNION ALL SELECT b3.id FROM (?) AS b3)",
			searchBranches(db, tenantID, f)...)
	}
	if err := q.Order("c.id DESC").Limit(int64(f.Limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("list customers: %w", err)
	}
	if err := loadAccountNumbers(ctx, db, tenantID, cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// filterCustomers applies the filters other than Query, and the cursor, to
// a query over customers aliased alias.
func filterCustomers(q *bun.SelectQuery, alias string, tenantID uuid.UUID, f CustomerFilter) *bun.SelectQuery {
	col := func(name string) bun.Ident { return bun.Ident(alias + "." + name) }
	q = q.Where("? = ?", col("tenant_id"), tenantID)
	if f.Status != "" {
		q = q.Where("? = ?", col("status"), f.Status)
	}
	if f.Ranking != "" {
		q = q.Where("? = ?", col("ranking"), f.Ranking)
	}
	if !f.CreatedAfter.IsZero() {
		q = q.Where("? >= ?", col("created_at"), f.CreatedAfter.UTC())
	}
	if !f.CreatedBefore.IsZero() {
		q = q.Where("? < ?", col("created_at"), f.CreatedBefore.UTC())
	}
	if f.After != uuid.Nil {
		q = q.Where("? < ?", col("id"), f.After)
	}
	return q
}

// searchBranches are the three searches of ListCustomers: the first page,
// under every other filter, of the customers whose company name, whose
// account numbers, whose invitations' emails match. Every branch and every
// subquery is held to the tenant.
func searchBranches(db bun.IDB, tenantID uuid.UUID, f CustomerFilter) []any {
	like := "%" + escapeLike(strings.ToLower(f.Query)) + "%"
	// Postgres' trigram indexes (migration 20261125000001) serve these
	// expressions. A query with no three letters or digits in a row has no
	// trigram to look up, and the index would be read whole, every entry
	// rechecked: slower than reading the table. The planner does not see
	// that coming, so such a query is written on an expression no index
	// has (the same value), leaving it the table scans and the newest-first
	// walk. SQLite has no such index and pays nothing for the difference.
	name, account, email := "LOWER(c1.company_name)", "LOWER(a.account_number)", "i.email_normalized"
	if !hasTrigram(f.Query) {
		name, account, email = "LOWER(c1.company_name || '')", "LOWER(a.account_number || '')", "(i.email_normalized || '')"
	}
	branch := func(alias string) *bun.SelectQuery {
		return filterCustomers(db.NewSelect().TableExpr("customers AS ?", bun.Ident(alias)).Column(alias+".id"), alias, tenantID, f).
			OrderExpr("? DESC", bun.Ident(alias+".id")).Limit(int64(f.Limit))
	}
	byName := branch("c1").Where(name+` LIKE ? ESCAPE '\'`, like)
	byAccount := branch("c2").Where("c2.id IN (?)", db.NewSelect().TableExpr("customer_accounts AS a").Column("a.customer_id").
		Where("a.tenant_id = ?", tenantID).Where(account+` LIKE ? ESCAPE '\'`, like))
	byEmail := branch("c3").Where("c3.id IN (?)", db.NewSelect().TableExpr("invitations AS i").Column("i.customer_id").
		Where("i.tenant_id = ?", tenantID).Where(email+` LIKE ? ESCAPE '\'`, like))
	return []any{byName, byAccount, byEmail}
}

// hasTrigram reports whether a search has three letters or digits in a row,
// what pg_trgm needs to look a LIKE pattern up in its index.
func hasTrigram(query string) bool {
	run := 0
	for _, r := range query {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if run++; run == 3 {
				return true
			}
		} else {
			run = 0
		}
	}
	return false
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ERPResult is the outcome of one verification of a customer's accounts.
type ERPResult struct {
	Status    string
	Name      string
	PriceTier string
	Error     string
}

// RecordERPResult stores a verification outcome on the customer.
func RecordERPResult(ctx context.Context, db bun.IDB, tenantID, customerID uuid.UUID, r ERPResult, now time.Time) error {
	res, err := db.NewUpdate().Model((*Customer)(nil)).
		Set("erp_status = ?", r.Status).
		Set("erp_name = ?", r.Name).
		Set("erp_price_tier = ?", r.PriceTier).
		Set("erp_error = ?", r.Error).
		Set("erp_checked_at = ?", now.UTC()).
		Set("updated_at = ?", now.UTC()).
		Where("tenant_id = ? AND id = ?", tenantID, customerID).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("record erp result: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("record erp result: customer %s: %w", customerID, ErrNotFound)
	}
	return nil
}

// CustomersByID loads several of the tenant's customers with their account
// numbers.
func CustomersByID(ctx context.Context, db bun.IDB, tenantID uuid.UUID, ids []uuid.UUID) ([]*Customer, error) {
	var cs []*Customer
	if len(ids) == 0 {
		return cs, nil
	}
	if err := db.NewSelect().Model(&cs).Where("c.tenant_id = ? AND c.id IN (?)", tenantID, bun.In(ids)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("customers by id: %w", err)
	}
	if err := loadAccountNumbers(ctx, db, tenantID, cs); err != nil {
		return nil, err
	}
	return cs, nil
}

// CustomersDueForVerification returns a page (keyset on id, every tenant) of
// active customers whose accounts are unverified, failed to verify, or were
// verified before staleBefore.
func CustomersDueForVerification(ctx context.Context, db bun.IDB, staleBefore time.Time, after uuid.UUID, limit int) ([]*Customer, error) {
	var cs []*Customer
	err := db.NewSelect().Model(&cs).
		Where("c.id > ? AND c.status = ?", after, CustomerActive).
		WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("c.erp_status IN (?)", bun.In([]string{ERPUnverified, ERPError})).
				WhereOr("c.erp_checked_at < ?", staleBefore.UTC())
		}).
		Order("c.id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("customers due for verification: %w", err)
	}
	return cs, nil
}
