"""manage.py backup --to DIR: the PostgreSQL database (pg_dump, custom format) and MEDIA_ROOT (tar)."""
import json
import subprocess
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from myhibachi.management.pg import DUMP, MANIFEST, MEDIA, POSTGRES_ENGINES, libpq_env, tool

PROGRESS_EVERY = 500  # media files between progress lines


class Command(BaseCommand):
    help = (f"Back up the configured PostgreSQL database (pg_dump --format=custom, {DUMP}) and MEDIA_ROOT "
            f"({MEDIA}) into a new or empty directory, with {MANIFEST}. Restore with manage.py restore. "
            "Progress on stderr.")

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, metavar="DIR", help="A new or empty directory.")

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        db = connections["default"].settings_dict
        if db["ENGINE"] not in POSTGRES_ENGINES:
            raise CommandError(
                f"manage.py backup needs PostgreSQL; this installation runs on {db['ENGINE'].rsplit('.', 1)[-1]} "
                f"({db['NAME']}). SQLite is a development database: stop the server and copy the file instead.")
        target = Path(options["to"])
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CommandError(f"{target} exists and is not an empty directory; name a new one.")
        target.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()

        dump_bytes = self._dump(db, target)
        files, media_bytes = self._media(target)
        manifest = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "database": db["NAME"],
            "pg_dump": subprocess.run([tool("pg_dump"), "--version"], capture_output=True, text=True).stdout.strip(),
            "database_bytes": dump_bytes,
            "media_root": str(settings.MEDIA_ROOT),
            "media_files": files,
            "media_bytes": media_bytes,
        }
        (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        self.stdout.write(f"backup complete: {target} (database {_mb(dump_bytes)}, media {files} files "
                          f"{_mb(media_bytes)}) in {time.monotonic() - started:.1f}s")

    def _progress(self, line):
        if self.verbosity >= 1:
            self.stderr.write(line)

    def _dump(self, db, target: Path) -> int:
        partial = target / f"{DUMP}.partial"
        self._progress(f"database {db['NAME']}: pg_dump --format=custom -> {target / DUMP}")
        started = time.monotonic()
        process = subprocess.Popen(
            [tool("pg_dump"), "--format=custom", "--verbose", "--no-password", f"--file={partial}"],
            env=libpq_env(db), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        messages = []
        for line in process.stderr:
            line = line.rstrip()
            messages.append(line)
            if "dumping contents of table" in line:
                self._progress("  table " + line.rsplit(" ", 1)[-1].strip('"'))
        if process.wait() != 0:
            partial.unlink(missing_ok=True)
            raise CommandError("pg_dump failed:\n" + "\n".join(
                line for line in messages[-20:] if "error" in line.lower() or "fatal" in line.lower())
                or "\n".join(messages[-5:]))
        partial.rename(target / DUMP)
        size = (target / DUMP).stat().st_size
        self._progress(f"database: {_mb(size)} in {time.monotonic() - started:.1f}s")
        return size

    def _media(self, target: Path) -> tuple[int, int]:
        root = Path(settings.MEDIA_ROOT)
        storage = settings.STORAGES["default"]["BACKEND"]
        if not storage.endswith("FileSystemStorage"):
            self._progress(f"media: the default storage is {storage} (not MEDIA_ROOT); "
                           "back it up where it lives (e.g. S3 versioning). Taring MEDIA_ROOT anyway.")
        self._progress(f"media: {root} -> {target / MEDIA}")
        files = size = 0
        partial = target / f"{MEDIA}.partial"
        with tarfile.open(partial, "w") as archive:
            if root.is_dir():
                for path in sorted(root.rglob("*")):
                    if path.is_symlink() or not path.is_file():
                        continue  # directories come with their files; links could point outside
                    archive.add(path, arcname=str(path.relative_to(root)), recursive=False)
                    files += 1
                    size += path.stat().st_size
                    if files % PROGRESS_EVERY == 0:
                        self._progress(f"  {files} files, {_mb(size)}")
            else:
                self._progress(f"  {root} does not exist: no media")
        partial.rename(target / MEDIA)
        self._progress(f"media: {files} files, {_mb(size)}")
        return files, size


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
