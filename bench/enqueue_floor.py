"""The floor for `mikotui notify missed --queue-only`: the same durable work
with the standard library and nothing else, as small as it can be written.

    python bench/enqueue_floor.py --config mikotui.toml --caller 5 --called 201

argparse for the same options, tomllib for the same config, a hand-built
MIME message for the called employee, and the spool's four fsyncs (message,
metadata, the entry's folder, queue/ after the rename). No validation, no
templates, no HTML part, no log line: a floor, not a product. bench_enqueue.py
times it beside the real command.
"""

import argparse
import json
import os
import time
import tomllib


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--caller", required=True)
    ap.add_argument("--called", required=True)
    ap.add_argument("--queue-only", action="store_true")
    args = ap.parse_args()
    with open(args.config, "rb") as f:
        conf = tomllib.load(f)
    root = os.path.join(os.path.dirname(os.path.abspath(args.config)),
                        conf.get("spool", {}).get("path", "spool"))
    to = next(e["email"] for e in conf.get("employees", []) if e["extension"] == args.called)
    now = time.time()
    entry_id = f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime(now))}.{os.urandom(3).hex()}"
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(now))
    message = (f"From: MikoPBX notification <pbx@pbx.test>\r\nTo: {to}\r\n"
               f"Subject: Missed call from {args.caller}\r\nDate: {date}\r\n"
               f"Message-ID: <{entry_id}@pbx.test>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/plain; charset=utf-8\r\n"
               "Content-Transfer-Encoding: 8bit\r\n\r\n"
               f"You missed a call from {args.caller} to {args.called}.\r\n").encode()
    meta = json.dumps({"id": entry_id, "kind": "missed", "created": now,
                       "recipients": [to], "owed": [to], "size": len(message)}).encode()
    tmp = os.path.join(root, "tmp", entry_id)
    os.mkdir(tmp, 0o700)
    write(os.path.join(tmp, "message.eml"), message)
    write(os.path.join(tmp, "meta.json"), meta)
    fsync_dir(tmp)
    os.rename(tmp, os.path.join(root, "queue", entry_id))
    fsync_dir(os.path.join(root, "queue"))


if __name__ == "__main__":
    main()
