"""Helpers every test folder shares.

- ``ports.free_port``: a loopback port nothing listens on;
- ``cli.run_servegate`` / ``cli.start_servegate``: the CLI as a user meets it, a subprocess in a brand-new
  HOME with nothing of servegate's, Prefect's or MLflow's set but what the test gives (``cli.fresh_env``);
- ``logs.problems`` / ``logs.tracebacks``: what a server's or worker's log must not hold;
- ``prefect_stack.PrefectStack``: ``prefect server start`` (and a worker) the way docs tell users;
- ``scale_stack.Stack``: the scaled-out setup of docs/scaling.md, built on ``PrefectStack``.
"""
