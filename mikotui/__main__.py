import sys

from mikotui.cli import main

sys.exit(main())
