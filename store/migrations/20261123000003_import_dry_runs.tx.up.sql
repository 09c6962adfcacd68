-- The rows a dry run found good. A dry run writes no customers or
-- invitations, so an email or account number repeated further down the file
-- is caught here instead; the report's list of rows that would succeed comes
-- from here too.
CREATE TABLE import_dry_run_rows (
    import_id         {{.UUID}} NOT NULL REFERENCES imports (id) ON DELETE CASCADE,
    row_number        integer NOT NULL,
    account_number    text NOT NULL,
    email             text NOT NULL,
    email_normalized  text NOT NULL,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    PRIMARY KEY (import_id, row_number)
);

--bun:split

CREATE UNIQUE INDEX import_dry_run_rows_email ON import_dry_run_rows (import_id, email_normalized);

--bun:split

CREATE UNIQUE INDEX import_dry_run_rows_account ON import_dry_run_rows (import_id, account_number);
