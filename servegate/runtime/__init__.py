"""The process runtime: who we are, whether a recorded process still runs, and what runs beside a deploy.

- :mod:`~servegate.runtime.identity`: ``ProcessIdentity(pid, start_ticks, host)`` and the one
  liveness rule every clean-up of a killed run uses (pid files, container labels, MLflow owner
  tags, the store's history and lock holder, work dirs); ``abandoned(pid, host, ticks)``.
- :mod:`~servegate.runtime.workdirs`: ``new_work_dir()``, which first removes killed attempts' dirs.
- :mod:`~servegate.runtime.preload`: ``Preloader`` (heavy imports on a background thread) and the
  process's validation preloader (it names validation's modules, which it imports only when started).
- :mod:`~servegate.runtime.fastexit`: ``exit_without_teardown`` (skip TensorFlow's slow teardown).

Submodules are imported on demand: importing this package costs nothing.
"""
