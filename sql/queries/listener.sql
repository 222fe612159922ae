-- name: probe
-- The listener's round-trip probe: a notification it sends to itself.
SELECT pg_notify($1, $2);
