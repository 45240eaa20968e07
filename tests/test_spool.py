"""The spool on its own: layout, claims, recovery, backoff, maximum age."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mikotui.spool import MAX_RETRY, Meta, Spool, SpoolError, new_id, retry_delay


def meta(**kw) -> Meta:
    base = Meta(id=new_id(), kind="missed", created=time.time(),
                recipients=("a@x.test", "b@x.test"), owed=("a@x.test", "b@x.test"))
    return replace(base, **kw)


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool(tmp_path / "spool", max_age_hours=1).ensure()


def test_enqueue_makes_a_whole_private_entry(spool: Spool):
    entry = spool.enqueue(meta(), b"Subject: x\n\nbody\n")
    assert entry.state == "queue"
    assert sorted(os.listdir(entry.path)) == ["message.eml", "meta.json"]
    assert entry.read_message() == b"Subject: x\n\nbody\n"
    assert entry.meta.size == 17
    assert stat.S_IMODE(spool.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(entry.path.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((entry.path / f).stat().st_mode) == 0o600
               for f in os.listdir(entry.path))
    assert os.listdir(spool.root / "tmp") == []
    assert [e.id for e in spool.entries("queue")] == [entry.id]


def test_ids_sort_by_creation():
    ids = [new_id(time.time() + i) for i in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


def test_a_claim_is_won_by_one_owner_only(spool: Spool):
    ids = [spool.enqueue(meta(), b"m").id for _ in range(200)]
    owners = [spool.owner(), spool.owner()]
    won: list[list[str]] = [[], []]
    start = threading.Barrier(2)

    def grab(i: int) -> None:
        start.wait()
        for entry_id in ids:
            if spool.claim(entry_id, owners[i]) is not None:
                won[i].append(entry_id)

    threads = [threading.Thread(target=grab, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won[0] + won[1]) == sorted(ids)
    assert not set(won[0]) & set(won[1])
    for o in owners:
        o.close()


def test_recover_takes_back_only_what_dead_owners_held(spool: Spool):
    mine = spool.enqueue(meta(), b"mine")
    theirs = spool.enqueue(meta(), b"theirs")
    with spool.owner() as owner:
        assert spool.claim(mine.id, owner) is not None
        # Another process claims one and dies without cleaning up (os._exit).
        code = (
            "import os, sys\n"
            "from mikotui.spool import Spool\n"
            "s = Spool(sys.argv[1])\n"
            "o = s.owner()\n"
            "assert s.claim(sys.argv[2], o)\n"
            "os._exit(0)\n"
        )
        subprocess.run([sys.executable, "-c", code, str(spool.root), theirs.id], check=True)
        assert len(os.listdir(spool.root / "active")) == 2
        assert spool.recover() == [theirs.id]
        assert [e.id for e in spool.entries("queue")] == [theirs.id]
        assert [e.id for e in spool.entries("active")] == [mine.id]
        assert spool.recover() == []


def test_defer_backs_off_and_keeps_who_is_owed(spool: Spool):
    with spool.owner() as owner:
        entry = spool.claim(spool.enqueue(meta(), b"m").id, owner)
        now = time.time()
        deferred = spool.defer(entry, error="451 later", code=451, owed=("b@x.test",), now=now)
    assert deferred.state == "queue"
    assert deferred.meta.attempts == 1 and deferred.meta.owed == ("b@x.test",)
    assert 48 <= deferred.meta.next_attempt - now <= 72
    assert spool.due(now) == [] and spool.due(now + 80) == [entry.id]


def test_too_old_goes_to_failed_with_the_reason(spool: Spool):
    # Retried for 55 min, the last attempt 10 min ago (in another boot: by the wall clock).
    with spool.owner() as owner:
        old = spool.enqueue(meta(created=time.time() - 3601, attempts=30, waited=3300.0,
                                 tried_at=time.time() - 600, tried_boot="other"), b"m")
        failed = spool.defer(spool.claim(old.id, owner), error="connection refused")
    assert failed.state == "failed"
    assert "undelivered after 1 h" in failed.meta.failed_reason
    assert "connection refused" in failed.meta.failed_reason
    assert [e.id for e in spool.entries("failed")] == [old.id]


def test_a_clock_jump_fails_no_entry_and_parks_none(tmp_path: Path):
    """What a jump of the wall clock looks like on disk: created 6 days
    ago and never tried; tried once "6 days ago" in another boot; set
    for a retry a day from now (the clock went back)."""
    spool = Spool(tmp_path / "spool", max_age_hours=120).ensure()
    now = time.time()
    never = spool.enqueue(meta(created=now - 6 * 86400), b"m")
    once = spool.enqueue(meta(created=now - 6 * 86400, attempts=1, tried_at=now - 6 * 86400,
                              tried_boot="another boot", next_attempt=now - 6 * 86400 + 60),
                         b"m")
    back = spool.enqueue(meta(attempts=1, tried_at=now + 86400 - 60, tried_boot="another boot",
                              next_attempt=now + 86400), b"m")
    assert spool.due(now) == sorted([never.id, once.id, back.id])
    with spool.owner() as owner:
        for entry_id in (never.id, once.id, back.id):
            deferred = spool.defer(spool.claim(entry_id, owner), error="refused", now=now)
            assert deferred.state == "queue", deferred.meta.failed_reason
            assert deferred.meta.next_attempt <= now + MAX_RETRY
    assert [e.meta.waited for e in spool.entries("queue")] == [0.0, 2 * MAX_RETRY, 0.0]


def test_a_retry_time_is_kept_by_the_boot_clock_whatever_the_wall_clock(spool: Spool):
    with spool.owner() as owner:
        entry = spool.claim(spool.enqueue(meta(), b"m").id, owner)
        now = time.time()
        deferred = spool.defer(entry, error="451 later", code=451, now=now)
    assert deferred.meta.tried_boot and deferred.meta.tried_mono > 0
    # The wall clock set back a day: by the boot clock a minute has not passed yet ...
    assert spool.due(now - 86400) == []
    # ... and once it has, the entry is due, whatever the wall clock says.
    moved = replace(deferred.meta, tried_mono=deferred.meta.tried_mono - 90)
    (deferred.path / "meta.json").write_bytes(moved.to_json())
    assert spool.due(now - 86400) == [entry.id]


@given(st.integers(min_value=1, max_value=40), st.integers(min_value=0, max_value=2**32))
def test_backoff_doubles_from_a_minute_and_caps_at_an_hour(attempts: int, seed: int):
    delay = retry_delay(attempts, random.Random(seed))
    base = min(60 * 2 ** (attempts - 1), MAX_RETRY)
    assert base * 0.8 <= delay <= min(base * 1.2, MAX_RETRY)


def test_jitter_spreads_retries():
    rng = random.Random(1)
    assert len({round(retry_delay(1, rng), 3) for _ in range(20)}) > 10


def test_retry_and_purge(spool: Spool):
    with spool.owner() as owner:
        entry = spool.claim(spool.enqueue(meta(), b"m").id, owner)
        failed = spool.fail(replace(entry, meta=replace(entry.meta, owed=("b@x.test",))),
                            "550 no")
        assert failed.state == "failed"
        again = spool.retry(entry.id, owner)
    assert again.state == "queue" and again.meta.failed_reason == ""
    assert again.meta.owed == ("b@x.test",) and spool.due() == [entry.id]
    assert spool.purge(entry.id).id == entry.id
    with pytest.raises(SpoolError):
        spool.purge(entry.id)
    assert list(spool.entries("queue")) == [] and os.listdir(spool.root / "tmp") == []


def test_purge_puts_aside_and_restore_brings_back_due_now(spool: Spool):
    with spool.owner() as owner:
        entry = spool.claim(spool.enqueue(meta(), b"m").id, owner)
        spool.fail(replace(entry, meta=replace(entry.meta, owed=("b@x.test",))), "550 no")
    before = time.time()
    purged = spool.purge(entry.id)
    assert purged.state == "purged" and purged.meta.purged >= before
    assert spool.find(entry.id) is None and spool.due() == []
    assert [e.id for e in spool.entries("purged")] == [entry.id]
    with spool.owner() as owner:
        back = spool.restore(entry.id, owner)
        with pytest.raises(SpoolError, match="no purged entry"):
            spool.restore(entry.id, owner)
    assert back.state == "queue" and back.meta.purged == 0.0 and back.meta.failed_reason == ""
    assert back.meta.owed == ("b@x.test",) and back.read_message() == b"m"
    assert spool.due() == [entry.id] and list(spool.entries("purged")) == []
    assert os.listdir(spool.root / "active") == []


def test_a_purged_queued_entry_comes_back_and_can_be_purged_again(spool: Spool):
    entry = spool.enqueue(meta(next_attempt=time.time() + 600), b"m")
    spool.purge(entry.id)
    with spool.owner() as owner:
        spool.restore(entry.id, owner)
    assert spool.due() == [entry.id]
    assert spool.purge(entry.id).state == "purged"
    assert [e.id for e in spool.entries("purged")] == [entry.id]


def test_purged_entries_are_deleted_after_seven_days(spool: Spool):
    old = spool.enqueue(meta(), b"m")
    young = spool.enqueue(meta(), b"m")
    now = time.time()
    spool.purge(old.id, now=now - 7 * 86400 - 1)
    spool.purge(young.id, now=now - 7 * 86400 + 60)
    spool.clean_tmp()  # what `deliver` calls on each pass
    assert [e.id for e in spool.entries("purged")] == [young.id]
    assert os.listdir(spool.root / "tmp") == []
    with spool.owner() as owner, pytest.raises(SpoolError, match="kept 7 days"):
        spool.restore(old.id, owner)


def test_purge_works_on_a_spool_made_before_purged_existed(spool: Spool):
    (spool.root / "purged").rmdir()
    entry = spool.enqueue(meta(), b"m")
    assert spool.purge(entry.id).state == "purged"


def test_update_replaces_metadata_whole(spool: Spool):
    with spool.owner() as owner:
        entry = spool.claim(spool.enqueue(meta(), b"m").id, owner)
        entry = spool.update(entry, replace(entry.meta, last_error="x" * 10000))
    assert sorted(os.listdir(entry.path)) == ["message.eml", "meta.json"]
    assert Meta.from_json((entry.path / "meta.json").read_bytes()).last_error == "x" * 10000


def test_a_spool_that_cannot_be_made_is_one_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SpoolError, match="cannot use the spool"):
        Spool(blocker / "spool").ensure()


def test_an_unreadable_entry_is_skipped_not_fatal(spool: Spool):
    good = spool.enqueue(meta(), b"m")
    bad = spool.root / "queue" / "20200101-000000.000000-badbad"
    bad.mkdir()
    (bad / "meta.json").write_text("{not json")
    stray = spool.root / "queue" / "stray-file"
    stray.write_text("x")
    assert spool.due() == [good.id]


def test_recover_sweeps_files_of_owners_that_died_holding_nothing(spool: Spool):
    code = ("import os, sys; from pathlib import Path; from mikotui.spool import Spool; "
            "o = Spool(Path(sys.argv[1])).owner(); print(o.token, flush=True); "
            "os.kill(os.getpid(), 9)")  # dies holding its lock, before any claim
    dead = subprocess.run([sys.executable, "-c", code, str(spool.root)], capture_output=True,
                          text=True, check=False).stdout.strip()
    with spool.owner() as alive:
        assert (spool.root / "owners" / dead).exists()
        spool.recover()
        assert sorted(os.listdir(spool.root / "owners")) == [alive.token]
