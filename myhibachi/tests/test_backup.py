"""manage.py backup and restore: a backup is proven by restoring it into a scratch database."""
import io
import json
import os
import re

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from crm.models import Customer
from inbox import services
from inbox.models import Conversation, Message
from myhibachi.management.pg import connect_kwargs
from tests.factories import make_user

MEDIA = {"attachments/2026/11/menu.pdf": b"%PDF-1.4 menu", "raw/abc.eml": b"From: a@example.com\r\n\r\nhi",
         "top.txt": b"top"}


def run(name, **options):
    out, err = io.StringIO(), io.StringIO()
    call_command(name, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


@pytest.fixture
def scratch_database():
    """An empty database beside the test database, dropped afterwards."""
    db = dict(connections["default"].settings_dict)
    name = f"{db['NAME']}_restore_{os.getpid()}"
    admin = {**connect_kwargs(db), "dbname": "postgres"}
    with psycopg.connect(**admin) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    user = f"{db['USER']}@" if db.get("USER") else ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    if password:
        user = f"{db['USER']}{password}@"
    yield name, f"postgres://{user}{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{name}"
    with psycopg.connect(**admin) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # pg_dump reads committed rows only
def test_backup_then_restore_into_a_scratch_database(tmp_path, settings, scratch_database):
    settings.MEDIA_ROOT = tmp_path / "media"
    for relative, content in MEDIA.items():
        path = settings.MEDIA_ROOT / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    make_user("agent-b", role="Agent")
    for n in range(3):
        services.receive_message(channel="email", sender=f"c{n}@example.com", text="Hi", external_id=f"b-{n}")
    services.receive_message(channel="email", sender="c0@example.com", text="Again", external_id="b-9")
    expected = {"crm_customer": Customer.objects.count(), "inbox_conversation": Conversation.objects.count(),
                "inbox_message": Message.objects.count(), "auth_user": 1}
    assert expected["inbox_message"] == 4

    out, err = run("backup", to=str(tmp_path / "backup"))

    assert "backup complete" in out
    assert "table public.inbox_message" in err and "media: 3 files" in err
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert manifest["media_files"] == 3 and manifest["database"] == connections["default"].settings_dict["NAME"]
    assert not list((tmp_path / "backup").glob("*.partial"))

    name, url = scratch_database
    out, err = run("restore", source=str(tmp_path / "backup"), database_url=url,
                   media_to=str(tmp_path / "restored-media"))

    counts = dict((table, int(rows.replace(",", ""))) for table, rows in re.findall(r"^(\w+)\s+([\d,]+)$", out, re.M))
    for table, rows in expected.items():
        assert counts[table] == rows, (table, out)
    assert counts["django_migrations"] > 10
    assert "table public.inbox_message" in err
    for relative, content in MEDIA.items():
        assert (tmp_path / "restored-media" / relative).read_bytes() == content

    # The scratch database is not empty any more: a second restore is refused, nothing is touched.
    with pytest.raises(CommandError, match="already has"):
        run("restore", source=str(tmp_path / "backup"), database_url=url)


@pytest.mark.postgres
@pytest.mark.django_db
def test_restore_refuses_the_configured_database(tmp_path):
    (tmp_path / "database.dump").write_bytes(b"x")
    db = connections["default"].settings_dict
    url = f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or 'localhost'}:{db.get('PORT') or 5432}/{db['NAME']}"
    with pytest.raises(CommandError, match="is the configured database"):
        run("restore", source=str(tmp_path), database_url=url)


@pytest.mark.postgres
@pytest.mark.django_db
def test_backup_refuses_a_directory_that_is_not_empty(tmp_path):
    (tmp_path / "something").write_text("x")
    with pytest.raises(CommandError, match="not an empty directory"):
        run("backup", to=str(tmp_path))


def test_backup_refuses_sqlite(tmp_path, db, monkeypatch):
    # Newcomer mode runs on SQLite anyway; full mode pretends to, for this one call.
    monkeypatch.setitem(connections["default"].settings_dict, "ENGINE", "django.db.backends.sqlite3")
    with pytest.raises(CommandError, match="needs PostgreSQL; this installation runs on sqlite3"):
        run("backup", to=str(tmp_path / "backup"))
    assert not (tmp_path / "backup").exists()


def test_restore_refuses_a_sqlite_target(tmp_path):
    (tmp_path / "database.dump").write_bytes(b"x")
    with pytest.raises(CommandError, match="must be a PostgreSQL database"):
        run("restore", source=str(tmp_path), database_url=f"sqlite:///{tmp_path / 'x.sqlite3'}")


def test_restore_needs_a_backup_directory(tmp_path):
    with pytest.raises(CommandError, match="database.dump not found"):
        run("restore", source=str(tmp_path), database_url="postgres://postgres@127.0.0.1:5432/scratch")


def test_restore_refuses_media_into_a_full_directory(tmp_path):
    (tmp_path / "database.dump").write_bytes(b"x")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "keep.txt").write_text("x")
    with pytest.raises(CommandError, match="not an empty directory"):
        run("restore", source=str(tmp_path), database_url="postgres://postgres@127.0.0.1:5432/scratch",
            media_to=str(tmp_path / "media"))
