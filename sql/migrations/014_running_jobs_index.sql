-- 014: job_queue_status_run_at_idx (pending and running jobs) becomes job_queue_running_idx (running jobs only):
-- every enqueued job wrote a pending entry there that job_queue_claim_idx, which holds the same rows, made redundant;
-- queries over due pending jobs use job_queue_claim_idx, lease recovery its own index (tests/test_index_plans.py).

-- Running jobs by lease end: lease recovery (queue.sql recover_expired, recover_and_claim: the expired leases in
-- locked_until order), expired_leases, the running jobs of a node, of a limited type, with progress. A job's entry
-- is written when it is claimed, as before; an enqueue no longer writes one.
CREATE INDEX job_queue_running_idx ON job_queue (locked_until) WHERE status = 'running';

DROP INDEX job_queue_status_run_at_idx;
