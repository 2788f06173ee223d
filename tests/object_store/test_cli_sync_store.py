"""``servegate sync`` takes its store the way every command does: ``--store``, else ``SERVEGATE_STORE``; a
directory store is refused by name (it is served where it lies). A subprocess, a brand-new HOME, SeaweedFS."""

from __future__ import annotations

from tests.object_store.test_cli_deploy import run_cli


def test_sync_takes_the_store_from_the_environment(tmp_path, seaweed, s3_store, half_plus_two):
    s3_store.promote("hp2", s3_store.stage("hp2", half_plus_two).version)
    base = tmp_path / "base"
    result = run_cli(tmp_path, "sync", "--name", "hp2", "--base-path", str(base), "--node-id", "n", "--once",
                     env={**seaweed.env(), "SERVEGATE_STORE": s3_store.location.uri})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (base / "1" / "saved_model.pb").is_file() and "Traceback" not in result.stderr


def test_sync_refuses_a_directory_store_by_name(tmp_path, seaweed):
    for args, env, named in [(["--store", str(tmp_path / "s")], {}, "--store"),
                             ([], {"SERVEGATE_STORE": str(tmp_path / "s")}, "SERVEGATE_STORE")]:
        result = run_cli(tmp_path, "sync", "--name", "hp2", "--base-path", str(tmp_path / "b"), "--once", *args,
                         env={**seaweed.env(), **env})
        assert result.returncode == 2, result.stderr[-3000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: {named} {tmp_path / 's'}: a directory store; servegate sync copies from an "
                               "s3:// store"), last
        assert f"servegate serve --store {tmp_path / 's'}" in last
        assert not (tmp_path / "b").exists() and not (tmp_path / "s").exists()
