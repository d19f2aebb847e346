"""Create Neutron's database schema: ``neutron_schema.py --config-file NEUTRON_CONF``.

On PostgreSQL, Neutron's own migrations run (``neutron-db-manage upgrade heads``), as an
operator runs them. One of them is MySQL-only: 2025.2's ``d553edeb540f_tag_case_sensitive``
issues ``ALTER TABLE tags CONVERT TO CHARACTER SET utf8mb4 ...``, which PostgreSQL rejects
(its text comparison is case-sensitive already, so the statement has nothing to do there):
on PostgreSQL that statement is skipped, and every other migration runs as written.

On SQLite (the sandbox's fallback) ``neutron-db-manage`` cannot migrate (SQLite has no
ALTER of constraints), so the schema comes from the models, as Neutron's own unit tests
build it, with the rows its migrations would seed: only the default security group rule
templates (egress allowed, ingress only from the same group) matter to a fresh cloud.
Without them every default security group would be empty.
"""

import configparser
import importlib.util
import sys
from pathlib import Path

import neutron.db.migration

DEFAULT_RULES_MIGRATION = ("alembic_migrations/versions/2023.2/expand/"
                           "c33da356b165_security_group_default_rules.py")


def connection_url(config_file: str) -> str:
    config = configparser.ConfigParser(interpolation=None)
    config.read(config_file)
    return config.get("database", "connection")


def migrate(config_file: str) -> None:
    import alembic.operations.base
    from neutron.db.migration import cli

    real_execute = alembic.operations.base.Operations.execute

    def execute(self, sqltext, *args, **kwargs):
        if (isinstance(sqltext, str) and "utf8mb4" in sqltext
                and self.get_bind().dialect.name == "postgresql"):
            print(f"skipped MySQL-only statement: {sqltext}", flush=True)
            return None
        return real_execute(self, sqltext, *args, **kwargs)

    alembic.operations.base.Operations.execute = execute
    sys.argv = ["neutron-db-manage", "--config-file", config_file, "upgrade", "heads"]
    code = cli.main()
    if code:
        sys.exit(code)
    print("neutron schema: migrated to heads", flush=True)


def default_rule_templates():
    # Read from Neutron's own migration so the rules stay what this release ships.
    path = Path(neutron.db.migration.__file__).parent / DEFAULT_RULES_MIGRATION
    spec = importlib.util.spec_from_file_location("neutron_default_sg_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table_name, module.default_template_rules


def create_from_models(url: str) -> None:
    import sqlalchemy
    from neutron.db.migration.models import head  # noqa: F401  (registers every model)
    from neutron_lib.db import model_base

    engine = sqlalchemy.create_engine(url)
    metadata = model_base.BASEV2.metadata
    metadata.create_all(engine)
    table_name, templates = default_rule_templates()
    attributes = metadata.tables["standardattributes"]
    rules = metadata.tables[table_name]
    with engine.begin() as connection:
        for template in templates:
            row = dict(template)
            inserted = connection.execute(sqlalchemy.insert(attributes).values(
                description=row.pop("description"), resource_type=table_name,
                revision_number=0))
            row["standard_attr_id"] = inserted.inserted_primary_key[0]
            connection.execute(sqlalchemy.insert(rules).values(row))
    engine.dispose()
    print(f"neutron schema: {len(metadata.tables)} tables from the models, "
          f"{len(templates)} default rule templates")


def main():
    if len(sys.argv) != 3 or sys.argv[1] != "--config-file":
        sys.exit(__doc__)
    config_file = sys.argv[2]
    url = connection_url(config_file)
    if url.startswith("sqlite"):
        create_from_models(url)
    else:
        migrate(config_file)


main()
