"""mikotui: mail and notifications for a MikoPBX/Asterisk PBX.

The core modules import neither Textual nor Rich; only `mikotui.app`,
`mikotui.screens` and `mikotui.widgets` do, so `notify` starts fast on a PBX
without a terminal stack.
"""

__version__ = "0.1.0"
