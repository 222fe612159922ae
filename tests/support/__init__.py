"""What the tests share: daemons in-process (daemon.py) and over HTTP (http.py, admin.py), real `worker run`
processes (procs.py), synchronous row helpers for Hypothesis tests (rows.py), the hostile-input checks
(hostile.py), the game platform simulator (game_platform.py), claim plans, a TCP proxy and a Sentry receiver.
Fixtures live in tests/conftest.py."""
