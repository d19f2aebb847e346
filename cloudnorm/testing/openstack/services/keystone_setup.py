"""Prepare Keystone: schema, token and credential keys, admin user, region and endpoint.

The same four ``keystone-manage`` commands an operator runs, in one interpreter: each
would otherwise pay two to three seconds of start-up.
Usage: ``keystone_setup.py CONFIG_FILE -- BOOTSTRAP_ARGS...``
"""

import getpass
import grp
import os
import sys

from keystone.cmd import cli

config_file = sys.argv[1]
if sys.argv[2:3] != ["--"]:
    sys.exit(__doc__)
bootstrap_args = sys.argv[3:]
del sys.argv[1:]
base = ["--config-file", config_file]
owner = ["--keystone-user", getpass.getuser(),
         "--keystone-group", grp.getgrgid(os.getgid()).gr_name]

cli.main(argv=["keystone-manage", *base, "db_sync"])
for command in (["fernet_setup", *owner], ["credential_setup", *owner],
                ["bootstrap", *bootstrap_args]):
    cli.CONF(args=[*base, *command], project="keystone")
    cli.CONF.command.cmd_class.main()
print("keystone setup complete", flush=True)
