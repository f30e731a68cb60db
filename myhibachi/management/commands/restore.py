"""manage.py restore --from DIR --database-url URL [--media-to DIR]: a backup into a scratch database.

Restores what manage.py backup wrote into an existing, empty PostgreSQL database
(never the configured one) with pg_restore, optionally unpacks the media into a
new or empty directory, and prints the row count of every table, so a backup is
proven by restoring it, not by its size.
"""
import subprocess
import tarfile
import time
from pathlib import Path

import dj_database_url
import psycopg
from django.core.management.base import BaseCommand, CommandError
from django.db import connections
from psycopg import sql

from myhibachi.management.pg import DUMP, MEDIA, POSTGRES_ENGINES, connect_kwargs, libpq_env, tool


class Command(BaseCommand):
    help = (f"Restore a backup directory (manage.py backup) into an empty scratch PostgreSQL database with "
            f"pg_restore, unpack its media with --media-to, and print the rows of every table.")

    def add_arguments(self, parser):
        parser.add_argument("--from", required=True, dest="source", metavar="DIR", help="A backup directory.")
        parser.add_argument("--database-url", required=True, metavar="URL",
                            help="An existing, empty PostgreSQL database, e.g. postgres://postgres@127.0.0.1/scratch "
                                 "(createdb scratch). Never the configured database.")
        parser.add_argument("--media-to", metavar="DIR",
                            help="Unpack the media here (a new or empty directory); without it media is only listed.")
        parser.add_argument("--jobs", type=int, default=1, help="pg_restore --jobs (default 1).")

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        source = Path(options["source"])
        dump, media = source / DUMP, source / MEDIA
        if not dump.is_file():
            raise CommandError(f"{dump} not found: --from names a directory written by manage.py backup.")
        target = self._target(options["database_url"])
        media_to = Path(options["media_to"]) if options["media_to"] else None
        if media_to is not None and media_to.exists() and (not media_to.is_dir() or any(media_to.iterdir())):
            raise CommandError(f"--media-to {media_to} exists and is not an empty directory.")
        if options["jobs"] < 1:
            raise CommandError("--jobs must be 1 or more.")
        self._check_empty(target)
        started = time.monotonic()

        self._restore(dump, target, options["jobs"])
        if media.is_file():
            self._media(media, media_to)
        else:
            self._progress(f"media: {media} not in the backup")
        self._print_counts(target)
        self.stdout.write(f"restore complete into {target['NAME']} in {time.monotonic() - started:.1f}s")

    def _progress(self, line):
        if self.verbosity >= 1:
            self.stderr.write(line)

    def _target(self, url: str) -> dict:
        try:
            target = dj_database_url.parse(url)
        except Exception as exc:
            raise CommandError(f"--database-url: cannot read it ({exc.__class__.__name__}).")
        if target.get("ENGINE") not in POSTGRES_ENGINES:
            raise CommandError("--database-url must be a PostgreSQL database (postgres://...): restore needs "
                               "pg_restore, and backups are taken only of PostgreSQL.")
        if not target.get("NAME"):
            raise CommandError("--database-url names no database.")
        configured = connections["default"].settings_dict
        if configured["ENGINE"] in POSTGRES_ENGINES and _where(target) == _where(configured):
            raise CommandError(f"{target['NAME']} is the configured database: restore into a scratch database "
                               "(createdb scratch) and compare, or point DATABASE_URL at the restored one.")
        return target

    def _check_empty(self, target):
        try:
            with psycopg.connect(**connect_kwargs(target)) as connection:
                tables = connection.execute(
                    "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                ).fetchone()[0]
        except psycopg.Error as exc:
            raise CommandError(f"cannot connect to {target['NAME']}: {str(exc).strip()} (create it first: "
                               f"createdb {target['NAME']}).")
        if tables:
            raise CommandError(f"{target['NAME']} already has {tables} tables: restore into an empty database.")

    def _restore(self, dump: Path, target: dict, jobs: int):
        self._progress(f"database: pg_restore {dump} -> {target['NAME']}")
        started = time.monotonic()
        process = subprocess.Popen(
            [tool("pg_restore"), "--verbose", "--no-owner", "--no-privileges", "--exit-on-error", "--no-password",
             f"--jobs={jobs}", f"--dbname={target['NAME']}", str(dump)],
            env=libpq_env(target), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        messages = []
        for line in process.stderr:
            line = line.rstrip()
            messages.append(line)
            if "processing data for table" in line:
                self._progress("  table " + line.rsplit(" ", 1)[-1].strip('"'))
        if process.wait() != 0:
            raise CommandError("pg_restore failed:\n" + "\n".join(messages[-10:]))
        self._progress(f"database: restored in {time.monotonic() - started:.1f}s")

    def _media(self, media: Path, media_to):
        with tarfile.open(media) as archive:
            members = [member for member in archive.getmembers() if member.isfile()]
            size = sum(member.size for member in members)
            if media_to is None:
                self._progress(f"media: {len(members)} files, {size / 1_000_000:.1f} MB in the backup; "
                               "not unpacked (--media-to DIR)")
                return
            self._progress(f"media: {len(members)} files -> {media_to}")
            media_to.mkdir(parents=True, exist_ok=True)
            # The "data" filter refuses absolute paths, "..", links out of the directory and device files.
            archive.extractall(media_to, members=members, filter="data")
        self._progress(f"media: {len(members)} files, {size / 1_000_000:.1f} MB unpacked")

    def _print_counts(self, target):
        with psycopg.connect(**connect_kwargs(target)) as connection:
            tables = connection.execute(
                "SELECT schemaname, tablename FROM pg_tables "
                "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY schemaname, tablename"
            ).fetchall()
            counts = [(table if schema == "public" else f"{schema}.{table}",
                       connection.execute(sql.SQL("SELECT count(*) FROM {}").format(
                           sql.Identifier(schema, table))).fetchone()[0])
                      for schema, table in tables]
        width = max((len(name) for name, _ in counts), default=5) + 2
        self.stdout.write(f"{'table':<{width}}{'rows':>12}")
        for name, rows in counts:
            self.stdout.write(f"{name:<{width}}{rows:>12,}")
        self.stdout.write(f"{'total':<{width}}{sum(rows for _, rows in counts):>12,}")


def _where(db: dict) -> tuple:
    return ((db.get("HOST") or "localhost").replace("127.0.0.1", "localhost"), str(db.get("PORT") or 5432),
            db.get("NAME"))
