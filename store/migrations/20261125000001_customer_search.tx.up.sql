-- Customer search (GET /v1/customers?q=, store.ListCustomers): each of its
-- three branches walks one tenant's customers newest first,
CREATE INDEX IF NOT EXISTS customers_tenant_id ON customers (tenant_id, id);

--bun:split

-- probes a customer's invitations (this also serves the cascade when a
-- customer is deleted),
CREATE INDEX IF NOT EXISTS invitations_customer ON invitations (customer_id);

{{if .Postgres}}
--bun:split

-- and, on Postgres, looks the searched expressions up in trigram indexes.
-- pg_trgm is a trusted extension (PostgreSQL 13+): the database owner, or any
-- role with CREATE on the database, may create it; where it already exists,
-- in whatever schema, its operator class is named in that schema. IF NOT
-- EXISTS lets an operator build the indexes beforehand, CONCURRENTLY, under
-- these names (see the README).
DO $$
DECLARE
    trgm name;
BEGIN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
    SELECT n.nspname INTO trgm
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
    WHERE e.extname = 'pg_trgm';
    EXECUTE format('CREATE INDEX IF NOT EXISTS customers_company_name_trgm ON customers USING gin (lower(company_name) %I.gin_trgm_ops)', trgm);
    EXECUTE format('CREATE INDEX IF NOT EXISTS customer_accounts_number_trgm ON customer_accounts USING gin (lower(account_number) %I.gin_trgm_ops)', trgm);
    EXECUTE format('CREATE INDEX IF NOT EXISTS invitations_email_trgm ON invitations USING gin (email_normalized %I.gin_trgm_ops)', trgm);
END
$$;
{{end}}
