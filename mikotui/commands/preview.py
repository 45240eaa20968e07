"""mikotui preview missed|voicemail|test [--format text|html|eml]"""

from __future__ import annotations

import argparse
import sys


def register(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("preview", parents=[common],
                       help="render a notification with sample values",
                       description="Render an email with the sample values of its "
                                   "parameters, as the config's template makes it.")
    p.add_argument("kind", choices=("missed", "voicemail", "test"))
    p.add_argument("--format", choices=("text", "html", "eml"), default="text",
                   help="text: headers and body as read; html: the HTML part; "
                        "eml: the whole message")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from mikotui import config, i18n, preview

    settings = config.load(config.resolve_path(args.config))
    lang = i18n.language(args.lang, settings.ui.language)
    settings = config.with_language(settings, lang)
    pv = preview.build(args.kind, settings, lang)
    if args.format == "text":
        sys.stdout.write(preview.as_text(pv, settings))
    elif args.format == "html":
        sys.stdout.write(preview.as_html(pv))
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(pv.message(settings).as_bytes())
    return 0
