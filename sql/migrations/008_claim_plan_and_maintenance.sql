-- 008: a claim whose plan does not depend on statistics, and autovacuum settings for the queue's tables.
-- job_queue_pick walks job_queue_claim_idx in the claim's order: sorts are disabled for its one query, so no
-- statistics (stale, empty, taken before a burst) can make a claim read and sort every due pending job.

-- The due pending jobs of the given types (minus paused ones) to claim, locked, in the claim's order. Sorting is
-- disabled while this query is planned (SET below), so the only plan left is the ordered scan of
-- job_queue_claim_idx stopped by LIMIT: a claim reads about as many index entries as it takes, plus the dead
-- ones it skips (tests/test_claim_plan.py). Without it the planner chose, from stale statistics, a scan of
-- every due pending job and a sort before the LIMIT. VOLATILE: it locks rows (FOR UPDATE SKIP LOCKED).
CREATE FUNCTION job_queue_pick(task_types text[], n integer) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
AS $$
BEGIN
    RETURN QUERY
    SELECT q.id
    FROM job_queue AS q
    WHERE q.status = 'pending' AND q.run_at <= now()
      -- The claimable types once (an InitPlan): the handled types minus the paused ones; '*' pauses all.
      AND q.task_type = ANY (ARRAY(
            SELECT unnest(task_types)
            EXCEPT
            SELECT p.task_type FROM job_queue_pause AS p))
      AND NOT EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type = '*')
    ORDER BY q.priority DESC, q.run_at, q.id
    LIMIT n
    FOR UPDATE OF q SKIP LOCKED;
END
$$;

COMMENT ON FUNCTION job_queue_pick(text[], integer) IS
    'The claim''s pick (queue.sql claim, recover_and_claim): due pending jobs in claim order, locked; plan fixed.';

-- Autovacuum for a queue's churn (job_queue's own thresholds are set in 001). Unthrottled on job_queue: a
-- throttled vacuum of a table this hot falls behind and dead rows pile up under the claim. job_runs only
-- grows until cleanup deletes in batches: vacuum it once a few percent are dead, and after inserts so its
-- visibility map lets index-only scans skip the heap. See docs/maintenance.md.
ALTER TABLE job_queue SET (autovacuum_vacuum_cost_delay = 0, autovacuum_enabled = true);
ALTER TABLE job_runs SET (
    autovacuum_enabled = true,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05,
    autovacuum_vacuum_insert_scale_factor = 0.1
);
