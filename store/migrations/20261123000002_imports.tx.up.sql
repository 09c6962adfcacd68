-- Bulk imports: the upload with its original file (kept in chunks so it can be
-- streamed back without loading it whole), progress and checkpoint, and the
-- per-row error log.
CREATE TABLE imports (
    id               {{.UUID}} PRIMARY KEY,
    tenant_id        {{.UUID}} NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind             text NOT NULL,
    filename         text NOT NULL,
    content_type     text NOT NULL DEFAULT '',
    format           text NOT NULL DEFAULT '',
    size_bytes       bigint NOT NULL DEFAULT 0,
    sheet            text NOT NULL DEFAULT '',
    status           text NOT NULL CHECK (status IN ('queued', 'processing', 'completed', 'failed')),
    error            text NOT NULL DEFAULT '',
    validate_erp     {{.Bool}} NOT NULL DEFAULT FALSE,
    dry_run          {{.Bool}} NOT NULL DEFAULT FALSE,
    notify_email     text NOT NULL DEFAULT '',
    total_rows       integer NOT NULL DEFAULT 0,
    processed_rows   integer NOT NULL DEFAULT 0,
    succeeded        integer NOT NULL DEFAULT 0,
    failed           integer NOT NULL DEFAULT 0,
    checkpoint_row   integer NOT NULL DEFAULT 0,
    created_at       {{.Time}} NOT NULL,
    started_at       {{.Time}},
    finished_at      {{.Time}},
    updated_at       {{.Time}} NOT NULL
);

--bun:split

CREATE INDEX imports_tenant_created ON imports (tenant_id, created_at, id);

--bun:split

CREATE TABLE import_chunks (
    import_id  {{.UUID}} NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    seq        integer NOT NULL,
    data       {{.Bytes}} NOT NULL,
    PRIMARY KEY (import_id, seq)
);

--bun:split

CREATE TABLE import_errors (
    import_id       {{.UUID}} NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number      integer NOT NULL,
    field           text NOT NULL,
    message         text NOT NULL,
    account_number  text NOT NULL DEFAULT '',
    email           text NOT NULL DEFAULT '',
    first_name      text NOT NULL DEFAULT '',
    last_name       text NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, row_number, field)
);

--bun:split

CREATE INDEX invitations_import ON invitations (import_id, import_row) WHERE import_id IS NOT NULL;
