"""`make test` prepares what the tests need (scripts/test-prerequisites), or says in one line what
to install and the tests needing it are skipped with that reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from config.env import BASE_DIR
from tests.core import prerequisites

SCRIPT = BASE_DIR / "scripts" / "test-prerequisites"


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def bare_machine(tmp_path) -> tuple[dict[str, str], Path]:
    """A PATH without Chromium whose apt-get cannot install anything (it records that it was asked)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "mkdir", "sleep"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    asked = tmp_path / "apt-get.calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {asked}\nexit 100\n')
    (bin_dir / "apt-get").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CHROMIUM_PATH", "TEST_PREREQUISITES")}
    return {**env, "PATH": str(bin_dir)}, asked


def redis_answers() -> bool:
    import redis

    try:
        return bool(redis.Redis(host="127.0.0.1", port=6379, socket_timeout=2).ping())
    except redis.RedisError:
        return False


def test_make_test_and_ci_run_the_one_script():
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=BASE_DIR, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "scripts/test-prerequisites" in dry_run
    assert dry_run.index("scripts/test-prerequisites") < next(i for i, line in enumerate(dry_run) if "pytest" in line)
    ci = (BASE_DIR / ".ci" / "run").read_text()
    assert "make lint\nmake test\n" in ci and "apt-get" not in ci and "redis-server" not in ci


@pytest.mark.skipif(not shutil.which("chromium") or not redis_answers(), reason="needs Chromium and Redis present")
def test_with_everything_present_it_is_silent_and_quick():
    started = time.monotonic()
    done = run({k: v for k, v in os.environ.items() if k not in ("CHROMIUM_PATH", "TEST_PREREQUISITES")})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert time.monotonic() - started < 2


@pytest.mark.skipif(not redis_answers(), reason="the simulated machine has Redis; this one has none running")
def test_without_chromium_one_line_says_what_to_install(bare_machine):
    env, asked = bare_machine
    done = run(env)
    assert done.returncode == 0
    assert asked.read_text().split("\n")[0] == "update -qq"  # it tried apt-get, as root
    assert "apt-get install chromium" in done.stderr and len(done.stderr.splitlines()) == 1

    strict = run({**env, "TEST_PREREQUISITES": "required"})
    assert strict.returncode == 1 and strict.stderr == done.stderr


@pytest.mark.skipif(not redis_answers(), reason="the simulated machine has Redis; this one has none running")
def test_a_chromium_path_that_is_not_there_is_reported_not_installed(bare_machine):
    env, asked = bare_machine
    done = run({**env, "CHROMIUM_PATH": "/nonexistent/chromium"})
    assert done.returncode == 0 and not asked.exists()
    assert done.stderr.startswith("test prerequisites: CHROMIUM_PATH=/nonexistent/chromium is not an executable")


def test_the_browser_test_is_skipped_with_that_reason_or_fails_in_ci(monkeypatch, tmp_path):
    monkeypatch.delenv("CHROMIUM_PATH", raising=False)
    monkeypatch.delenv("TEST_PREREQUISITES", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.skip.Exception, match="install Debian's chromium package"):
        prerequisites.chromium()
    monkeypatch.setenv("TEST_PREREQUISITES", "required")
    with pytest.raises(pytest.fail.Exception, match="install Debian's chromium package"):
        prerequisites.chromium()

    browser = tmp_path / "chromium"
    browser.write_text("#!/bin/sh\n")
    browser.chmod(0o755)
    assert prerequisites.chromium() == str(browser)
