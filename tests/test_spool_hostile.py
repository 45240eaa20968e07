"""A hostile local user: a spool (or a config holding the password) that
another user owns or can write to is refused with one line saying how to
fix it, and no link inside the spool is ever followed. The other user is
a real one, made here when the suite runs as root (CI does); the real
`mikotui` command against a real aiosmtpd server."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import mikotui_command
from notify_support import ADMIN, Server, entries, settings_for, write
from test_spool_damage import queue_calls

from mikotui import config

OTHER = "mikotui-other"
SECRET = b"root's secret: the shadow file"


@pytest.fixture(scope="session")
def other() -> pwd.struct_passwd:
    """A second, unprivileged user: the neighbour."""
    if os.geteuid() != 0:
        pytest.skip("needs root, to make a second user who plays the hostile neighbour")
    try:
        return pwd.getpwnam(OTHER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell",
                        "/usr/sbin/nologin", OTHER], check=True, capture_output=True)
        return pwd.getpwnam(OTHER)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder both users can reach (pytest's own is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="mikotui-hostile-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.lchown(name, user.pw_uid, user.pw_gid)


def secret_file(folder: Path) -> Path:
    secret = folder / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    return secret


def plant_link(spool: Path, entry_id: str, target: Path) -> None:
    message = spool / "queue" / entry_id / "message.eml"
    message.unlink()
    message.symlink_to(target)


def run_as(user: pwd.struct_passwd | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MIKOTUI_CONFIG", "MIKOTUI_DEBUG")}
    ids = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}
    return subprocess.run(mikotui_command() + list(args), capture_output=True, text=True,
                          env=env, cwd="/", timeout=60, check=False, **ids)


@pytest.mark.parametrize("whose", ["the neighbour's", "root's, mode 0777"])
def test_a_spool_others_can_write_is_refused_and_nothing_is_mailed(tmp_path, other, whose):
    """The spool was made 0777 (by the neighbour, or by root with a loose
    umask) and holds a message.eml linked to a root-only file, addressed to
    the neighbour: root's deliverer refuses the spool and mails nothing."""
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = tmp_path / "spool"
        [entry_id] = queue_calls(settings, 1)
        plant_link(spool, entry_id, secret_file(tmp_path))
        for folder in [spool, *spool.iterdir()]:
            folder.chmod(0o777) if folder.is_dir() else None
        if whose == "the neighbour's":
            chown_tree(spool, other)
        r = run_as(None, "--config", conf, "deliver")
        assert r.returncode == os.EX_CANTCREAT, r.stdout + r.stderr
        [line] = r.stderr.splitlines()
        assert line.startswith(f"mikotui: refusing the spool {spool}")
        if whose == "the neighbour's":
            assert f"belongs to {OTHER}, not to root" in line and "chown -R root" in line
        else:
            assert "others can write to" in line and "chmod 700" in line
        listed = run_as(None, "--config", conf, "queue", "list")
        assert listed.returncode == os.EX_CANTCREAT and "refusing the spool" in listed.stderr
    assert server.received == []


def test_a_link_inside_the_spool_is_never_followed(tmp_path):
    """root's own spool, with a message.eml that is a link to a root-only
    file: the entry goes to failed/ unread; the one beside it is sent."""
    with Server() as server:
        settings = settings_for(tmp_path, server.port)
        conf = write(tmp_path, settings)
        spool = tmp_path / "spool"
        linked, _ = queue_calls(settings, 2)
        plant_link(spool, linked, secret_file(tmp_path))
        (spool / "tmp" / "old-link").symlink_to(tmp_path)  # cleaning tmp/ must not follow it
        os.utime(spool / "tmp" / "old-link", (0, 0), follow_symlinks=False)
        r = run_as(None, "--config", conf, "deliver")
        assert r.returncode == 0, r.stderr
        assert "sent 2, deferred 0, failed 1" in r.stdout  # the call and the admin's alert
    assert sorted(m.rcpt_tos for m in server.received) == [(ADMIN,), ("smith@pbx.test",)]
    assert all(SECRET not in m.data for m in server.received)
    [failed] = entries(spool, "failed")
    assert failed["id"] == linked and "cannot read message.eml" in failed["failed_reason"]
    assert (tmp_path / "secret").read_bytes() == SECRET and (tmp_path / "mikotui.toml").exists()
    assert not (spool / "tmp" / "old-link").exists()


def test_a_spool_path_that_is_the_neighbours_link_is_refused(shared, other, tmp_path):
    """The configured spool path does not exist; the neighbour makes it a
    link to a folder of theirs, to receive root's entries."""
    theirs = shared / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, other.pw_uid, other.pw_gid)
    link = shared / "spool"
    link.symlink_to(theirs)
    os.lchown(link, other.pw_uid, other.pw_gid)
    settings = settings_for(tmp_path, 1)
    settings = replace(settings, spool=replace(settings.spool, path=str(link)))
    conf = write(tmp_path, settings)
    for command in (["deliver"], ["queue", "list"]):
        r = run_as(None, "--config", conf, *command)
        assert r.returncode == os.EX_CANTCREAT, r.stderr
        [line] = r.stderr.splitlines()
        assert f"refusing the spool {link}: it is a link that {OTHER} made" in line
        assert f"rm {link}" in line
    assert os.listdir(theirs) == []


@pytest.mark.parametrize("how", ["writable by others", "the neighbour's"])
def test_a_config_with_the_password_others_control_is_not_sent_with(tmp_path, other, how):
    with Server(auth=("pbx", "right-pw")) as server:
        settings = settings_for(tmp_path, server.port, username="pbx", password="right-pw",
                                allow_insecure_auth=True)
        conf = Path(write(tmp_path, settings))
        if how == "writable by others":
            conf.chmod(0o666)
        else:
            os.chown(conf, other.pw_uid, other.pw_gid)
        r = run_as(None, "--config", str(conf), "deliver")
        assert r.returncode == os.EX_CONFIG, r.stderr
        [line] = r.stderr.splitlines()
        assert "holds the SMTP password" in line
        assert ("chmod 600" in line if how == "writable by others"
                else f"belongs to {OTHER}, not to root" in line)
        # A missed call is still kept: queued, for `deliver` once the config is fixed.
        r = run_as(None, "--config", str(conf), "notify", "missed", "--caller", "5",
                   "--called", "201")
        assert r.returncode == 0, r.stderr
        assert "not sending now" in r.stderr and "queued instead" in r.stderr
        assert server.logins == [] and server.received == []
        [queued] = entries(tmp_path / "spool", "queue")
        assert queued["recipients"] == ["smith@pbx.test"]
        os.chown(conf, 0, 0)
        conf.chmod(0o600)
        r = run_as(None, "--config", str(conf), "deliver")
        assert r.returncode == 0 and "sent 1" in r.stdout, r.stderr
    assert [m.rcpt_tos for m in server.received] == [("smith@pbx.test",)]


# `mikotui` as another user: the interpreter may sit in root's private home
# (pyenv in /root), so it starts as root, loads what the command needs, and
# drops to the user (groups, gid, uid) before the command runs.
AS_USER = """
import os, sys
import mikotui.cli, mikotui.commands.deliver, mikotui.commands.queue, mikotui.deliver, pwd
import mikotui.config, mikotui.i18n, mikotui.log, mikotui.spool
uid, gid = int(sys.argv[1]), int(sys.argv[2])
mikotui.cli.build_parser(sys.argv[3:]).parse_args(sys.argv[3:])  # argparse's own imports
mikotui.config.load(sys.argv[4])
os.setgroups([])
os.setgid(gid)
os.setuid(uid)
sys.exit(mikotui.cli.main(sys.argv[3:]))
"""


def test_the_neighbour_running_mikotui_on_roots_spool_is_refused(shared, other):
    settings = replace(settings_for(shared, 1), path=None)
    conf = Path(config.save(settings, shared / "mikotui.toml"))
    conf.chmod(0o644)
    spool = shared / "spool"
    [entry_id] = queue_calls(replace(settings, spool=replace(settings.spool,
                                                               path=str(spool))), 1)
    spool.chmod(0o755)
    for command in (["deliver"], ["queue", "list"]):
        r = subprocess.run([sys.executable, "-c", AS_USER, str(other.pw_uid),
                            str(other.pw_gid), "--config", str(conf), *command],
                           capture_output=True, text=True, cwd="/", check=False)
        assert r.returncode == os.EX_CANTCREAT, r.stderr
        [line] = r.stderr.splitlines()
        assert f"refusing the spool {spool}: {spool} belongs to root, not to {OTHER}" in line
        assert f"run it as root, or: chown -R {OTHER} {spool}" in line
    assert [e["id"] for e in entries(spool, "queue")] == [entry_id]
