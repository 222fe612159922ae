-- 017: the limited pick counts the running jobs of the limited types only once its walk meets a limited job.
-- 016's job_queue_pick_limited read which slots were full before every walk: a count over every running job
-- of the limited types, through job_queue_running_idx, whose entries are every running job of any type. With
-- a limited type registered (game_platform_sync is, in every daemon) every claim of any job paid it, and a
-- daemon that claims ahead holds up to a thousand jobs running (docs/performance.md, "Issue 25, sixth round").
-- Now the walk starts with no slot known full. The first limited job it meets takes the limits' locks and
-- counts under them, as 016 did; the full slots follow from that count, and the slots this claim's own takes
-- fill are added as they fill. A job of a slot found full then ends a walk that started before the count: the
-- walk starts again with the full slots filtered out, so their waiting rows are passed over unlocked as
-- before. For that, at most one job of a full slot is dropped per claim; the rows the ended walk had already
-- fetched ahead (PL/pgSQL fetches a loop's rows in batches) stay locked by the claim until it commits, as the
-- rows past a claim's last take always did. A claim whose walk meets no limited job counts nothing
-- (tests/test_limits.py).
CREATE OR REPLACE FUNCTION job_queue_pick_limited(
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
    full_slots jsonb := '{}';
    counted_before_walk boolean;
    rewalk boolean;
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
    FOR part IN SELECT * FROM job_queue_walk_segments(from_priority, from_run_at, from_id) LOOP
        want := n - taken;
        FOR walk IN 1..8 LOOP
            got := 0;
            dropped := 0;
            keyed_dropped := 0;
            rewalk := false;
            counted_before_walk := used IS NOT NULL;
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
                        SELECT coalesce(jsonb_object_agg(u.key, true), '{}') INTO full_slots
                        FROM jsonb_each_text(used) AS u
                        WHERE u.value::integer >= (caps ->> split_part(u.key, E'\n', 1))::integer;
                    END IF;
                    IF coalesce((used ->> r.slot)::integer, 0) >= (caps ->> r.task_type)::integer THEN
                        dropped := dropped + 1;
                        IF fields ? r.task_type THEN
                            keyed_dropped := keyed_dropped + 1;  -- its type is not excluded: walk as many more
                        ELSIF NOT r.task_type = ANY (excluded) THEN
                            excluded := excluded || r.task_type;
                        END IF;
                        IF NOT counted_before_walk THEN
                            rewalk := true;  -- this walk filters no full slot: again, with those just counted
                            EXIT;
                        END IF;
                        CONTINUE;
                    END IF;
                    used := jsonb_set(used, ARRAY[r.slot], to_jsonb(coalesce((used ->> r.slot)::integer, 0) + 1));
                    IF (used ->> r.slot)::integer >= (caps ->> r.task_type)::integer THEN
                        full_slots := full_slots || jsonb_build_object(r.slot, true);
                    END IF;
                END IF;
                taken := taken + 1;
                RETURN NEXT r.id;
            END LOOP;
            EXIT WHEN taken >= n OR NOT rewalk AND (dropped = 0 OR got < want);
            want := n - taken + keyed_dropped;
        END LOOP;
        EXIT WHEN taken >= n;
    END LOOP;
END
$$;

COMMENT ON FUNCTION job_queue_pick_limited(text[], integer, text[], integer, timestamptz, uuid) IS
    'job_queue_pick when a claimable type has a concurrency limit: the same walk, each limit held under its lock.';
