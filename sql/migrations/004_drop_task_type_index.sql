-- 004: drop job_queue_task_type_idx. No query uses it (per-type counts group every row, listings walk
-- job_queue_created_idx), yet every status change is a non-HOT update that had to add an entry to it.
DROP INDEX IF EXISTS job_queue_task_type_idx;
