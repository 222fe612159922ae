"""An example plugin for `worker`: see tasks.py and docs/tasks.md."""
