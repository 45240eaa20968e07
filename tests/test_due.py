"""The deliverer's index of due times (mikotui.due) against a real spool that
other processes change under it: new entries, retries coming due, another
deliverer's claims, and `mikotui queue retry/purge/restore` run meanwhile.
Both ways of following `queue/` are checked: inotify and the polling
fallback. Then the same through a running `mikotui deliver --watch` and a
real SMTP server."""

from __future__ import annotations

import signal
import time
from dataclasses import replace

import pytest
from conftest import running
from notify_support import Server, entries, settings_for, write

from mikotui import notify
from mikotui.due import DueIndex
from mikotui.spool import Meta, Spool, new_id

LATER = 3600.0  # a retry time no test reaches


def meta(**fields: object) -> Meta:
    to = ("smith@pbx.test",)
    return Meta(**{"id": new_id(), "kind": "missed", "created": time.time(),
                   "recipients": to, "owed": to, **fields})  # type: ignore[arg-type]


@pytest.fixture(params=["inotify", "polling"])
def index_of(request):
    made: list[DueIndex] = []

    def make(spool: Spool) -> DueIndex:
        index = DueIndex(spool, inotify=request.param == "inotify")
        assert (index.fileno() is not None) == (request.param == "inotify")
        made.append(index)
        return index

    yield make
    for index in made:
        index.close()


def wait_until(check, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return check()


def test_new_entries_are_due_and_waiting_ones_are_not(tmp_path, index_of):
    spool = Spool(tmp_path / "spool").ensure()
    first = spool.enqueue(meta(), b"m").id
    waiting = spool.enqueue(meta(attempts=1, next_attempt=time.time() + LATER), b"m").id
    index = index_of(spool)
    index.refresh()
    assert len(index) == 2
    assert index.take(10) == [first]
    later = [spool.enqueue(meta(), b"m").id for _ in range(3)]
    index.refresh()
    assert index.take(2) == later[:2]  # oldest first, `count` at most
    assert index.take(10) == later[2:]
    assert index.take(10) == []
    assert 0 < (index.next_due() or 0) <= LATER
    assert index.take(10, everything=True) == [waiting]


def test_a_retry_comes_due_at_its_time(tmp_path, index_of):
    spool = Spool(tmp_path / "spool").ensure()
    index = index_of(spool)
    index.refresh()
    soon = spool.enqueue(meta(attempts=1, next_attempt=time.time() + 0.5), b"m").id
    index.refresh()
    assert index.take(10) == []
    assert wait_until(lambda: index.take(10) == [soon])


def test_our_own_deferral_is_read_back_with_its_new_time(tmp_path, index_of):
    spool = Spool(tmp_path / "spool").ensure()
    entry_id = spool.enqueue(meta(), b"m").id
    index = index_of(spool)
    index.refresh()
    [taken] = index.take(10)
    with spool.owner() as owner:
        spool.defer(spool.claim(taken, owner), error="451 later")
    index.refresh()
    assert len(index) == 1 and index.take(10) == []
    assert index.first_retry() == entries(spool.root, "queue")[0]["next_attempt"]
    assert entry_id == taken


def test_another_deliverers_claim_and_its_deferral(tmp_path, index_of):
    spool = Spool(tmp_path / "spool").ensure()
    entry_id = spool.enqueue(meta(), b"m").id
    index = index_of(spool)
    index.refresh()
    with spool.owner() as theirs, spool.owner() as ours:
        entry = spool.claim(entry_id, theirs)  # the other deliverer is faster
        index.refresh()
        # Polling sees it gone; inotify (which only follows what comes in)
        # does not, and the claim says so.
        assert [spool.claim(i, ours) for i in index.take(10)] in ([], [None])
        spool.defer(entry, error="451 later")  # theirs goes back, waiting
    index.refresh()
    assert index.take(10) == []
    assert len(index) == 1


def test_queue_retry_purge_and_restore_while_the_index_runs(tmp_path, cli, index_of):
    settings = settings_for(tmp_path, 9)
    conf = write(tmp_path, settings)
    spool = Spool(settings.spool_dir()).ensure()
    waiting = [spool.enqueue(meta(attempts=1, next_attempt=time.time() + LATER), b"m").id
               for _ in range(3)]
    index = index_of(spool)
    index.refresh()
    assert index.take(10) == []

    assert cli("--config", conf, "queue", "retry", waiting[0]).returncode == 0
    index.refresh()
    assert index.take(10) == [waiting[0]]
    with spool.owner() as owner:  # sent, as a deliverer would
        spool.done(spool.claim(waiting[0], owner))

    assert cli("--config", conf, "queue", "purge", waiting[1]).returncode == 0
    index.refresh()
    index.prune()
    assert len(index) == 1 and index.take(10, everything=True) == [waiting[2]]

    assert cli("--config", conf, "queue", "restore", waiting[1]).returncode == 0
    index.refresh()
    assert index.take(10) == [waiting[1]]

    # A purged entry the index still holds costs one failed claim, no send.
    index.rescan()
    assert cli("--config", conf, "queue", "purge", waiting[1]).returncode == 0
    taken = index.take(10, everything=True)
    assert taken == [waiting[1], waiting[2]]
    with spool.owner() as owner:
        claims = [spool.claim(i, owner) for i in taken]
    assert claims[0] is None and claims[1] is not None


def test_a_damaged_entry_is_skipped_not_fatal(tmp_path, index_of, capfd):
    spool = Spool(tmp_path / "spool").ensure()
    good = spool.enqueue(meta(), b"m").id
    bad = spool.enqueue(meta(), b"m")
    (bad.path / "meta.json").write_bytes(b"{not json")
    index = index_of(spool)
    index.refresh()
    assert index.take(10) == [good]
    assert "damaged spool entry" in capfd.readouterr().err
    assert list(spool.damaged) == [bad.path]  # for the deliverer to put in failed/


# --- the same through `deliver --watch` and a real server ---------------------------

def queue(settings, **fields: object) -> str:
    spool = Spool(settings.spool_dir()).ensure()
    prepared = notify.missed_call(settings, notify.MissedCall("5", "201"))
    return spool.enqueue(replace(prepared.meta(), **fields), prepared.data).id


def test_watch_follows_queue_edits_made_while_it_runs(tmp_path, cli):
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        later = {"attempts": 1, "next_attempt": time.time() + LATER}
        retried, purged, kept = (queue(settings, **later) for _ in range(3))
        with running("--config", conf, "deliver", "--watch") as proc:
            assert b"event=watching" in proc.stderr.readline()
            assert cli("--config", conf, "queue", "retry", retried).returncode == 0
            assert server.handler.wait_for(1)
            assert cli("--config", conf, "queue", "purge", purged).returncode == 0
            assert cli("--config", conf, "queue", "restore", purged).returncode == 0
            assert server.handler.wait_for(2)
            fresh = cli("--config", conf, "notify", "missed", "--caller", "6", "--called",
                        "201", "--queue-only")
            assert fresh.returncode == 0
            assert server.handler.wait_for(3)
            # Another deliverer at the same time: each message still goes once.
            for _ in range(20):
                queue(settings)
            other = cli("--config", conf, "deliver")
            assert other.returncode == 0
            assert server.handler.wait_for(23)
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and b"sent " in out
    ids = [r.message_id for r in server.received]
    assert len(ids) == len(set(ids)) == 23
    assert [e["id"] for e in entries(tmp_path / "spool", "queue")] == [kept]


def test_the_stored_bytes_go_to_the_server_as_they_are(tmp_path, cli):
    """No parse and re-flatten on the way: a header as someone wrote it
    (no space after the colon, an odd fold) arrives byte for byte."""
    data = (b"From: pbx@pbx.test\nTo: smith@pbx.test\nSubject:no space\n"
            b"X-Folded: one\n\t  two\nMessage-ID: <raw@pbx.test>\n\nbody\n.dot line\n")
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = Spool(settings.spool_dir()).ensure()
        spool.enqueue(meta(), data)
        r = cli("--config", conf, "deliver")
        assert r.returncode == 0 and "sent 1" in r.stdout_text
    [got] = server.received
    assert got.data == data.replace(b"\n", b"\r\n")
