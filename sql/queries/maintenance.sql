-- Named queries of worker/cli/doctor.py's maintenance check and bench/bench_soak.py.

-- name: autovacuum_state
-- Is autovacuum on for the queue's tables: the server's switch (and track_counts, which it needs) and each
-- table's own autovacuum_enabled (migration 008 sets it on; ALTER TABLE ... SET (autovacuum_enabled = false)
-- turns it off for one table). With the dead rows it has to clear and when it last ran.
SELECT c.relname AS table_name,
       current_setting('autovacuum')::boolean AND current_setting('track_counts')::boolean AS server_on,
       coalesce((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) AS o
                 WHERE o.option_name = 'autovacuum_enabled'), true) AS table_on,
       coalesce(s.n_dead_tup, 0) AS dead_rows,
       coalesce(s.n_live_tup, 0) AS live_rows,
       s.last_autovacuum,
       coalesce(s.autovacuum_count, 0) AS autovacuum_count
FROM pg_class AS c
LEFT JOIN pg_stat_user_tables AS s ON s.relid = c.oid
WHERE c.oid IN ('job_queue'::regclass, 'job_runs'::regclass)
ORDER BY c.relname;
