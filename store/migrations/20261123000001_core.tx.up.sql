-- Portable across Postgres and SQLite: column types come from the template data
-- that store.Migrate passes for the dialect (see migrate.go).
-- Core schema: tenants, customers and their account numbers, invitations
-- (contacts), portal users, deliveries and the outbox.
CREATE TABLE tenants (
    id                      {{.UUID}} PRIMARY KEY,
    name                    text NOT NULL,
    api_key_hash            {{.Bytes}} NOT NULL UNIQUE,
    api_key_prefix          text NOT NULL,
    admin_email             text NOT NULL DEFAULT '',
    invite_ttl_hours        integer NOT NULL DEFAULT 336,
    resend_max              integer NOT NULL DEFAULT 3,
    resend_interval_hours   integer NOT NULL DEFAULT 72,
    created_at              {{.Time}} NOT NULL
);

--bun:split

CREATE TABLE customers (
    id               {{.UUID}} PRIMARY KEY,
    tenant_id        {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    company_name     text NOT NULL,
    phone            text NOT NULL DEFAULT '',
    ranking          text NOT NULL DEFAULT '',
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'inactive', 'blacklisted')),
    erp_status       text NOT NULL DEFAULT 'unverified' CHECK (erp_status IN ('unverified', 'verified', 'not_found', 'error')),
    erp_name         text NOT NULL DEFAULT '',
    erp_price_tier   text NOT NULL DEFAULT '',
    erp_error        text NOT NULL DEFAULT '',
    erp_checked_at   {{.Time}},
    created_at       {{.Time}} NOT NULL,
    updated_at       {{.Time}} NOT NULL
);

--bun:split

CREATE INDEX customers_tenant_created ON customers (tenant_id, created_at, id);

--bun:split

CREATE TABLE customer_accounts (
    tenant_id        {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    account_number   text NOT NULL,
    customer_id      {{.UUID}} NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    PRIMARY KEY (tenant_id, account_number)
);

--bun:split

CREATE INDEX customer_accounts_customer ON customer_accounts (customer_id);

--bun:split

CREATE TABLE invitations (
    id                {{.UUID}} PRIMARY KEY,
    tenant_id         {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_id       {{.UUID}} NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    kind              text NOT NULL CHECK (kind IN ('vendor', 'customer_admin')),
    email             text NOT NULL,
    email_normalized  text NOT NULL,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    phone             text NOT NULL DEFAULT '',
    role              text NOT NULL DEFAULT 'admin',
    state             text NOT NULL CHECK (state IN ('saved', 'pending', 'accepted', 'expired', 'revoked')),
    delivery_status   text NOT NULL DEFAULT '',
    delivery_error    text NOT NULL DEFAULT '',
    expires_at        {{.Time}},
    send_count        integer NOT NULL DEFAULT 0,
    last_sent_at      {{.Time}},
    accepted_at       {{.Time}},
    revoked_at        {{.Time}},
    import_id         {{.UUID}},
    import_row        integer,
    created_at        {{.Time}} NOT NULL,
    updated_at        {{.Time}} NOT NULL
);

--bun:split

-- An email is in use once per tenant among invitations that are not revoked.
CREATE UNIQUE INDEX invitations_email_in_use ON invitations (tenant_id, email_normalized) WHERE state <> 'revoked';

--bun:split

-- The vendor invites only the initial contact of a customer.
CREATE UNIQUE INDEX invitations_one_vendor_invite ON invitations (customer_id) WHERE kind = 'vendor' AND state <> 'revoked';

--bun:split

CREATE INDEX invitations_tenant_state ON invitations (tenant_id, state, id);

--bun:split

-- Every link ever sent: a resend mints a new token and supersedes the old one,
-- so an old link can be told apart from one that never existed.
CREATE TABLE invitation_tokens (
    token_hash     {{.Bytes}} PRIMARY KEY,
    invitation_id  {{.UUID}} NOT NULL REFERENCES invitations (id) ON DELETE CASCADE,
    delivery_id    {{.UUID}} NOT NULL,
    created_at     {{.Time}} NOT NULL,
    superseded_at  {{.Time}}
);

--bun:split

CREATE INDEX invitation_tokens_invitation ON invitation_tokens (invitation_id) WHERE superseded_at IS NULL;

--bun:split

CREATE TABLE users (
    id                {{.UUID}} PRIMARY KEY,
    tenant_id         {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    customer_id       {{.UUID}} NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    invitation_id     {{.UUID}} NOT NULL UNIQUE REFERENCES invitations (id),
    email             text NOT NULL,
    email_normalized  text NOT NULL,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    role              text NOT NULL,
    created_at        {{.Time}} NOT NULL,
    UNIQUE (tenant_id, email_normalized)
);

--bun:split

CREATE TABLE deliveries (
    id                   {{.UUID}} PRIMARY KEY,
    tenant_id            {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    invitation_id        {{.UUID}} REFERENCES invitations (id) ON DELETE CASCADE,
    import_id            {{.UUID}},
    kind                 text NOT NULL,
    state                text NOT NULL CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'bounced')),
    event                text NOT NULL DEFAULT '',
    attempts             integer NOT NULL DEFAULT 0,
    last_error           text NOT NULL DEFAULT '',
    provider_message_id  text NOT NULL DEFAULT '',
    lease_until          {{.Time}},
    sent_at              {{.Time}},
    created_at           {{.Time}} NOT NULL,
    updated_at           {{.Time}} NOT NULL
);

--bun:split

CREATE INDEX deliveries_invitation ON deliveries (invitation_id);

--bun:split

CREATE INDEX deliveries_unfinished ON deliveries (state, lease_until) WHERE state IN ('queued', 'sending');

--bun:split

CREATE TABLE outbox (
    task_id       text PRIMARY KEY,
    tenant_id     {{.UUID}},
    task_type     text NOT NULL,
    queue         text NOT NULL,
    payload       {{.Bytes}} NOT NULL,
    created_at    {{.Time}} NOT NULL,
    enqueued_at   {{.Time}},
    completed_at  {{.Time}}
);

--bun:split

CREATE INDEX outbox_not_enqueued ON outbox (created_at) WHERE enqueued_at IS NULL;

--bun:split

CREATE INDEX outbox_not_completed ON outbox (enqueued_at) WHERE completed_at IS NULL;
