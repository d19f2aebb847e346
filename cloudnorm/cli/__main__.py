"""``python -m cloudnorm.cli``: the ``cloudnorm`` command without its script."""

from cloudnorm.cli import main

main()
