-- name: create_migrations_table
CREATE TABLE IF NOT EXISTS worker_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: lock
SELECT pg_advisory_lock($1);

-- name: unlock
SELECT pg_advisory_unlock($1);

-- name: applied
SELECT version, checksum FROM worker_migrations ORDER BY version;

-- name: record
INSERT INTO worker_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: table_exists
SELECT to_regclass('worker_migrations') IS NOT NULL;
