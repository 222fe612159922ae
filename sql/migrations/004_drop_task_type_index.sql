-- 004: drop job_queue_task_type_idx.
-- No query needs it: the per-type counts (metrics, admin, doctor) read every row and group them, and the
-- listings filter by type while they walk job_queue_created_idx. Yet a job's every status change is a
-- non-HOT update (status is in the partial indexes' predicates), so each claim and each finish inserted a
-- new entry into it: about 3 µs of database CPU per job per update, for nothing.
DROP INDEX IF EXISTS job_queue_task_type_idx;
