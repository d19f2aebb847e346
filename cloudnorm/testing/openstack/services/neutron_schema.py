"""Create Neutron's database schema from its models, with the rows its migrations seed.

``neutron-db-manage`` cannot migrate SQLite (ALTER of constraints), so the schema comes
from the models, as Neutron's own unit tests build it. Only one migration inserts data a
fresh cloud needs: the default security group rule templates (egress allowed, ingress only
from the same group). Without them every default security group would be empty.
"""

import argparse
import importlib.util
from pathlib import Path

import neutron.db.migration
import sqlalchemy
from neutron.db.migration.models import head  # noqa: F401  (registers every model)
from neutron_lib.db import model_base

DEFAULT_RULES_MIGRATION = ("alembic_migrations/versions/2023.2/expand/"
                           "c33da356b165_security_group_default_rules.py")


def default_rule_templates():
    # Read from Neutron's own migration so the rules stay what this release ships.
    path = Path(neutron.db.migration.__file__).parent / DEFAULT_RULES_MIGRATION
    spec = importlib.util.spec_from_file_location("neutron_default_sg_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.table_name, module.default_template_rules


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--connection", required=True, help="SQLAlchemy URL of the new database")
    engine = sqlalchemy.create_engine(parser.parse_args().connection)
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
    print(f"neutron schema: {len(metadata.tables)} tables, {len(templates)} default rule templates")


main()
