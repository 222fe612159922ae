-- 016: a claim that starts its walk of job_queue_claim_idx after the entries its daemon's last claim left dead.
-- Each claim walked the index from its head, and between two vacuums of job_queue the head holds an entry for
-- every job claimed since the last one: under a steady load thousands of pages that every claim stepped over
-- (docs/performance.md, "Issue 25, fifth round"). A daemon now passes the id of the first job of the lowest
-- priority its last claim took (`from_id`): that claim took every claimable due job before it, so the walk at
-- that priority starts at that job's key, and the priorities above and below are walked whole. Jobs that can appear before that key since (an insert with a run_at already
-- past, a job handed back, a row another claim held locked and released) are found by the full walk that the
-- daemon makes at least once a second, and whenever its last claim did not take all it asked
-- (worker/runtime/walk.py; tests/test_claim_walk.py).

-- The parts of job_queue_claim_idx's order that a walk from a key visits, in order: with no key the whole index
-- once; with one, the priorities above its own, then its own from its (run_at, id), then those below. As ranges
-- a btree scan starts at (priority BETWEEN lo AND hi, then (run_at, id) >= (run_at_from, id_from)): the scan
-- descends to the key instead of stepping over the entries before it.
CREATE FUNCTION job_queue_walk_segments(from_priority integer, from_run_at timestamptz, from_id uuid)
RETURNS TABLE (lo integer, hi integer, run_at_from timestamptz, id_from uuid)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    first_run_at CONSTANT timestamptz := '-infinity';
    first_id CONSTANT uuid := '00000000-0000-0000-0000-000000000000';
BEGIN
    IF from_priority IS NULL OR from_run_at IS NULL OR from_id IS NULL THEN
        RETURN QUERY VALUES (-2147483648, 2147483647, first_run_at, first_id);
        RETURN;
    END IF;
    IF from_priority < 2147483647 THEN
        RETURN QUERY VALUES (from_priority + 1, 2147483647, first_run_at, first_id);
    END IF;
    RETURN QUERY VALUES (from_priority, from_priority, from_run_at, from_id);
    IF from_priority > -2147483648 THEN
        RETURN QUERY VALUES (-2147483648, from_priority - 1, first_run_at, first_id);
    END IF;
END
$$;

COMMENT ON FUNCTION job_queue_walk_segments(integer, timestamptz, uuid) IS
    'The ranges of job_queue_claim_idx a claim walks, in order, from a key (none: the whole index).';

DROP FUNCTION job_queue_pick(text[], integer);
DROP FUNCTION job_queue_pick_limited(text[], integer, text[]);

-- 010's walk for limited types, over the same ranges.
CREATE FUNCTION job_queue_pick_limited(
    task_types text[], n integer, limited text[], from_priority integer, from_run_at timestamptz, from_id uuid
) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    claimable text[];
    caps jsonb;
    fields jsonb;
    used jsonb;
    full_slots jsonb;
    excluded text[] := '{}';
    seen uuid[] := '{}';
    taken integer := 0;
    want integer;
    got integer;
    dropped integer;
    keyed_dropped integer;
    r record;
    part record;
BEGIN
    IF n <= 0 OR EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type = '*') THEN
        RETURN;
    END IF;
    claimable := ARRAY(SELECT unnest(task_types) EXCEPT SELECT p.task_type FROM job_queue_pause AS p);
    SELECT jsonb_object_agg(l.task_type, l.max_running),
           coalesce(jsonb_object_agg(l.task_type, l.key_field) FILTER (WHERE l.key_field IS NOT NULL), '{}')
    INTO caps, fields
    FROM job_queue_limits AS l WHERE l.task_type = ANY (limited);
    -- The slots full as of now, read without the lock: their waiting rows are passed over unlocked by the walk.
    -- Only a hint (a slot may free before the lock is taken: its job is claimed at the next wake-up, which the
    -- finish's NOTIFY brings); the count under the lock below is what enforces the limit.
    SELECT coalesce(jsonb_object_agg(s.slot, true) FILTER (WHERE s.n >= (caps ->> s.task_type)::integer), '{}')
    INTO full_slots
    FROM (SELECT q.task_type, q.task_type || E'\n'
                 || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none') AS slot, count(*) AS n
          FROM job_queue AS q
          WHERE q.status = 'running' AND q.task_type = ANY (limited)
          GROUP BY 1, 2) AS s;
    FOR part IN SELECT * FROM job_queue_walk_segments(from_priority, from_run_at, from_id) LOOP
        want := n - taken;
        FOR walk IN 1..8 LOOP
            got := 0;
            dropped := 0;
            keyed_dropped := 0;
            FOR r IN
                SELECT q.id, q.task_type,
                       CASE WHEN q.task_type = ANY (limited) THEN
                           q.task_type || E'\n' || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none')
                       END AS slot
                FROM job_queue AS q
                WHERE q.status = 'pending' AND q.run_at <= now()
                  AND q.priority BETWEEN part.lo AND part.hi AND (q.run_at, q.id) >= (part.run_at_from, part.id_from)
                  AND q.task_type = ANY (claimable) AND q.task_type <> ALL (excluded) AND q.id <> ALL (seen)
                  AND NOT (q.task_type = ANY (limited) AND full_slots ? (q.task_type || E'\n'
                           || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none')))
                ORDER BY q.priority DESC, q.run_at, q.id
                LIMIT want
                FOR UPDATE OF q SKIP LOCKED
            LOOP
                EXIT WHEN taken >= n;
                got := got + 1;
                seen := seen || r.id;
                IF r.slot IS NOT NULL THEN
                    IF used IS NULL THEN
                        PERFORM FROM job_queue_limits AS l WHERE l.task_type = ANY (limited)
                        ORDER BY l.task_type FOR UPDATE;
                        SELECT coalesce(jsonb_object_agg(s.slot, s.n), '{}') INTO used
                        FROM (SELECT q.task_type || E'\n'
                                     || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none') AS slot,
                                     count(*) AS n
                              FROM job_queue AS q
                              WHERE q.status = 'running' AND q.task_type = ANY (limited)
                              GROUP BY 1) AS s;
                    END IF;
                    IF coalesce((used ->> r.slot)::integer, 0) >= (caps ->> r.task_type)::integer THEN
                        dropped := dropped + 1;
                        IF fields ? r.task_type THEN
                            keyed_dropped := keyed_dropped + 1;  -- its type is not excluded: walk as many more
                        ELSIF NOT r.task_type = ANY (excluded) THEN
                            excluded := excluded || r.task_type;
                        END IF;
                        CONTINUE;
                    END IF;
                    used := jsonb_set(used, ARRAY[r.slot], to_jsonb(coalesce((used ->> r.slot)::integer, 0) + 1));
                END IF;
                taken := taken + 1;
                RETURN NEXT r.id;
            END LOOP;
            EXIT WHEN dropped = 0 OR got < want OR taken >= n;
            want := n - taken + keyed_dropped;
        END LOOP;
        EXIT WHEN taken >= n;
    END LOOP;
END
$$;

COMMENT ON FUNCTION job_queue_pick_limited(text[], integer, text[], integer, timestamptz, uuid) IS
    'job_queue_pick when a claimable type has a concurrency limit: the same walk, each limit held under its lock.';

-- 010's pick, walking from `walk_from` when it is a job that is no longer pending: a pending one may have been
-- handed back or retried, with another run_at, and an unknown id is no key at all; both walk the whole index.
-- Sorts stay disabled: each range is an ordered scan of job_queue_claim_idx stopped by the LIMIT
-- (tests/test_claim_plan.py). Both picks plan their queries once per connection (generic plans: the ranges'
-- bounds are parameters, and any bounds get the same ordered scan) and never JIT-compile them (a plan with a
-- disabled sort is costed far over jit_above_cost, and a compile per claim costs more than the claim).
CREATE FUNCTION job_queue_pick(task_types text[], n integer, walk_from uuid DEFAULT NULL) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
SET plan_cache_mode = force_generic_plan
SET jit = off
AS $$
DECLARE
    limited text[];
    claimable text[];
    from_priority integer;
    from_run_at timestamptz;
    got integer;
    part record;
BEGIN
    IF walk_from IS NOT NULL THEN
        SELECT q.priority, q.run_at INTO from_priority, from_run_at
        FROM job_queue AS q WHERE q.id = walk_from AND q.status <> 'pending';
    END IF;
    SELECT array_agg(l.task_type) INTO limited FROM job_queue_limits AS l WHERE l.task_type = ANY (task_types);
    IF limited IS NOT NULL THEN
        RETURN QUERY SELECT p.id
        FROM job_queue_pick_limited(task_types, n, limited, from_priority, from_run_at, walk_from) AS p (id);
        RETURN;
    END IF;
    IF n <= 0 OR EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type = '*') THEN
        RETURN;
    END IF;
    -- The claimable types: the handled types minus the paused ones.
    claimable := ARRAY(SELECT unnest(task_types) EXCEPT SELECT p.task_type FROM job_queue_pause AS p);
    FOR part IN SELECT * FROM job_queue_walk_segments(from_priority, from_run_at, walk_from) LOOP
        RETURN QUERY
        SELECT q.id
        FROM job_queue AS q
        WHERE q.status = 'pending' AND q.run_at <= now()
          AND q.priority BETWEEN part.lo AND part.hi AND (q.run_at, q.id) >= (part.run_at_from, part.id_from)
          AND q.task_type = ANY (claimable)
        ORDER BY q.priority DESC, q.run_at, q.id
        LIMIT n
        FOR UPDATE OF q SKIP LOCKED;
        GET DIAGNOSTICS got = ROW_COUNT;
        n := n - got;
        EXIT WHEN n <= 0;
    END LOOP;
END
$$;

COMMENT ON FUNCTION job_queue_pick(text[], integer, uuid) IS
    'The claim''s pick (queue.sql claim, recover_and_claim): due pending jobs in claim order, locked; plan fixed.';
