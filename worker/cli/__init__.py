"""The command line, a face over the core and the runtime: `worker` (main.py) and its subcommands (jobs, nodes,
ops, tasks, doctor, demo), the output helpers (output.py) and the throwaway PostgreSQL cluster (pgcluster.py)."""
