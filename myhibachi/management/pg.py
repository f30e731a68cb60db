"""What manage.py backup and restore share: PostgreSQL connection details for the client tools.

The password goes to pg_dump / pg_restore in PGPASSWORD, never on the command line
(where `ps` shows it to every user of the machine).
"""
import os
import shutil

from django.core.management.base import CommandError

POSTGRES_ENGINES = ("django.db.backends.postgresql", "myhibachi.postgresql")
DUMP = "database.dump"  # pg_dump --format=custom
MEDIA = "media.tar"  # MEDIA_ROOT, paths relative to it
MANIFEST = "manifest.json"


def libpq_env(db: dict) -> dict:
    """Environment for a PostgreSQL client tool reaching the database of a Django settings dict."""
    env = dict(os.environ)
    for variable, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"),
                          ("PGPASSWORD", "PASSWORD"), ("PGDATABASE", "NAME")):
        value = db.get(key)
        if value not in (None, ""):
            env[variable] = str(value)
        else:
            env.pop(variable, None)
    return env


def tool(name: str) -> str:
    """Path of a PostgreSQL client tool (Debian: postgresql-client)."""
    found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if not found:
        raise CommandError(f"{name} is not installed: apt-get install postgresql-client (the server's major version).")
    return found


def connect_kwargs(db: dict) -> dict:
    """psycopg.connect() arguments for a Django settings dict."""
    kwargs = {"dbname": db["NAME"], "autocommit": True, "connect_timeout": 10}
    for key, name in (("HOST", "host"), ("PORT", "port"), ("USER", "user"), ("PASSWORD", "password")):
        if db.get(key) not in (None, ""):
            kwargs[name] = str(db[key])
    return kwargs
