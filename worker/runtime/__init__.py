"""What only the daemon uses: the fetch loop (daemon.py), the one job runner (jobrun.py: claim -> run -> finish
with lease renewal and self-fencing; runner.py: one attempt of one handler), leases, completions, deadlines,
claim-ahead, the wake-up event, the LISTEN connection and the scheduler. The core never imports it (import
contracts in pyproject.toml)."""
