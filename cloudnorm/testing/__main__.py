"""``python -m cloudnorm.testing``: see ``cli.main``."""

import sys

from cloudnorm.testing.cli import main

sys.exit(main())
