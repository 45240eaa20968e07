"""mikotui sandbox: a local capture SMTP server; every message it accepts is
stored in a Maildir and summed up on one line. Ctrl-C or SIGTERM stops it."""

from __future__ import annotations

import argparse
import os
import sys


def _credentials(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected USER:PASSWORD")
    return user, password


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sandbox", parents=[common],
                       help="run a local capture SMTP server",
                       description="Accept every message on 127.0.0.1, store it in a "
                                   "Maildir and print one line per message. Nothing is "
                                   "relayed. Ctrl-C stops it.")
    p.add_argument("--port", type=int, default=2525, help="port to listen on (default 2525)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--maildir", metavar="DIR", default="sandbox-mail",
                   help="where messages are stored (default ./sandbox-mail)")
    p.add_argument("--tls", action="store_true",
                   help="offer STARTTLS with a generated self-signed certificate")
    p.add_argument("--auth", metavar="USER:PASS", type=_credentials,
                   help="require this login")
    p.add_argument("--point-config", action="store_true",
                   help="instead of serving: point the --config file's [smtp] at the "
                        "sandbox `mikotui --sandbox` runs (127.0.0.1:--port, STARTTLS, "
                        "login sandbox@localhost, a generated password) and exit")
    p.set_defaults(handler=run)


def point_config(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from mikotui import config, sandbox

    path = config.resolve_path(args.config)
    settings = config.load(path)
    smtp = replace(settings.smtp, host="127.0.0.1", port=args.port, encryption="starttls",
                   verify_certificate=False, username=sandbox.LOGIN,
                   password=sandbox.new_password(), sender_address=sandbox.SENDER)
    config.save(replace(settings, smtp=smtp), path)
    print(f"{path}: [smtp] now sends to the sandbox on 127.0.0.1:{args.port} "
          f"(login {sandbox.LOGIN}); `mikotui --sandbox --config {path}` runs it")
    return 0


def run(args: argparse.Namespace) -> int:
    import signal
    import threading
    from pathlib import Path

    from mikotui.sandbox import CapturedMessage, Sandbox

    if args.point_config:
        return point_config(args)

    def show(message: CapturedMessage) -> None:
        print(message.summary(), flush=True)

    stop = threading.Event()
    sandbox = Sandbox(Path(args.maildir), host=args.host, port=args.port, tls=args.tls,
                      auth=args.auth, on_message=show)
    # Both signals just end the wait; the server then stops in order.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        sandbox.start()
    except OSError as exc:
        print(f"mikotui: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return os.EX_UNAVAILABLE
    try:
        print(_banner(args, sandbox.port), flush=True)
        stop.wait()
    finally:
        sandbox.stop()
    print(f"stopped; {len(sandbox.messages())} message(s) in {args.maildir}", flush=True)
    return 0


def _banner(args: argparse.Namespace, port: int) -> str:
    how = ["STARTTLS (self-signed: verify_certificate = false)" if args.tls
           else "no encryption"]
    if args.auth:
        how.append(f"login {args.auth[0]}")
    return (f"sandbox SMTP on {args.host}:{port}, {', '.join(how)}; "
            f"storing to {args.maildir}; Ctrl-C stops")
