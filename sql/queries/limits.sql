-- Named queries of worker/limits.py and worker/game_platform/ratelimit.py: concurrency limits (migration 010) and
-- shared token buckets.

-- name: publish_limits
-- A daemon's tasks' limits at start-up: the limited ones upserted, the unlimited ones among them removed.
-- $1 limited task types, $2 their max_running, $3 their key fields (null: one limit for the type),
-- $4 the unlimited task types the daemon handles, $5 worker id. Rows are written in task_type order, the order
-- in which the claim locks them.
WITH gone AS (
    DELETE FROM job_queue_limits WHERE task_type = ANY ($4::text[])
    RETURNING task_type
)
INSERT INTO job_queue_limits AS l (task_type, max_running, key_field, updated_at, updated_by)
SELECT t.task_type, t.max_running, t.key_field, now(), $5
FROM unnest($1::text[], $2::int[], $3::text[]) AS t (task_type, max_running, key_field)
ORDER BY t.task_type
ON CONFLICT (task_type) DO UPDATE
SET max_running = excluded.max_running, key_field = excluded.key_field, updated_at = now(),
    updated_by = excluded.updated_by
WHERE (l.max_running, l.key_field) IS DISTINCT FROM (excluded.max_running, excluded.key_field);

-- name: slots
-- Each limited type: its limit, the jobs running (slots in use, summed over keys for a per-key limit), the due
-- pending jobs and how long the oldest of them has waited. Reads running and due pending rows only.
SELECT l.task_type, l.max_running, l.key_field, l.updated_by,
       count(*) FILTER (WHERE q.status = 'running') AS running,
       count(*) FILTER (WHERE q.status = 'pending' AND q.run_at <= now()) AS waiting,
       coalesce(extract(epoch FROM now() - min(q.run_at) FILTER (WHERE q.status = 'pending'
                                                                  AND q.run_at <= now())), 0)::float8
           AS oldest_wait_s
FROM job_queue_limits AS l
LEFT JOIN job_queue AS q ON q.task_type = l.task_type AND q.status IN ('pending', 'running')
GROUP BY l.task_type, l.max_running, l.key_field, l.updated_by
ORDER BY l.task_type;

-- name: ensure_bucket
-- $1 bucket, $2 its burst (a new bucket starts full).
INSERT INTO job_queue_rate_buckets (bucket, tokens, refilled_at) VALUES ($1, $2, statement_timestamp())
ON CONFLICT (bucket) DO NOTHING;

-- name: draw_tokens
-- Draw $4 tokens (all or none: a statement per batch, not per token) from bucket $1 (refilled at $2 per second for the time since its last draw, holding
-- at most $3), in one statement: the row is locked only while it runs, so a process that dies holds nothing.
-- Every expression reads the row as locked (a concurrent draw's result included); the time is the statement's,
-- and refilled_at never moves back, so no interval is refilled twice. No row: the bucket must be created first.
-- Returns the tokens granted ($4 or 0) and those left (for the wait until $4 are there).
UPDATE job_queue_rate_buckets AS b
SET granted = CASE WHEN least($3::float8, b.tokens + $2::float8
                  * greatest(0, extract(epoch FROM statement_timestamp() - b.refilled_at)::float8)) >= $4 THEN $4
                  ELSE 0 END,
    tokens = least($3::float8, b.tokens + $2::float8
                  * greatest(0, extract(epoch FROM statement_timestamp() - b.refilled_at)::float8))
             - CASE WHEN least($3::float8, b.tokens + $2::float8
                  * greatest(0, extract(epoch FROM statement_timestamp() - b.refilled_at)::float8)) >= $4 THEN $4
                  ELSE 0 END,
    refilled_at = greatest(b.refilled_at, statement_timestamp())
WHERE b.bucket = $1
RETURNING b.granted::integer AS granted, b.tokens;
