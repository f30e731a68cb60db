"""The layering rule, read off the import graph of the source.

Dependencies point one way: crm <- inbox <- channels_ingest, and analytics
reads them all; nothing imports "upward". No module uses another module's
_private names. The project package (myhibachi: settings, urls, roles,
management commands that touch every app) stands outside the order.
Test modules may reach into what they test; the rule is for the product.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPS = ("crm", "inbox", "channels_ingest", "analytics", "myhibachi")
# What each app may not import.
FORBIDDEN = {
    "crm": {"inbox", "channels_ingest", "analytics"},
    "inbox": {"channels_ingest", "analytics"},
    "channels_ingest": {"analytics"},
}


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    """The absolute name of `from <level dots><name> import ...` written in `module`."""
    if level == 0:
        return name or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


# Django's documented model API, underscored only to keep out of field names' way.
DJANGO_MODEL_API = {"_meta", "_state", "_default_manager", "_base_manager"}


def _is_private(name: str) -> bool:
    return (name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
            and name not in DJANGO_MODEL_API)


def _product_modules(root: Path, apps):
    """(path, path relative to root, syntax tree) of every product module: no tests, no migrations."""
    for app in apps:
        for path in sorted((root / app).rglob("*.py")):
            relative = path.relative_to(root)
            if "tests" not in relative.parts and "migrations" not in relative.parts:
                yield path, relative, ast.parse(path.read_text(), filename=str(path))


def violations(root: Path, apps=APPS) -> list:
    """Every breach of the rule under root, as readable lines."""
    found = []
    for path, relative, tree in _product_modules(root, apps):
        app = relative.parts[0]
        module = _module_name(root, path)
        bound = {}  # local name -> project module it stands for
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    _check_target(found, relative, node, app, alias.name)
                    top = alias.name.split(".")[0]
                    if top in apps:  # "import a.b" binds a; "import a.b as c" binds c to a.b
                        bound[alias.asname or top] = alias.name if alias.asname else top
            elif isinstance(node, ast.ImportFrom):
                source = _resolve(module, path.name == "__init__.py", node.level, node.module)
                _check_target(found, relative, node, app, source)
                if source.split(".")[0] not in apps:
                    continue
                for alias in node.names:
                    if _is_private(alias.name) and source != module:
                        found.append(f"{relative}:{node.lineno} imports {source}.{alias.name}, a private name")
                    bound[alias.asname or alias.name] = f"{source}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and _is_private(node.attr) and bound[node.value.id] != module):
                found.append(f"{relative}:{node.lineno} uses {bound[node.value.id]}.{node.attr}, a private name")
    return found


def _check_target(found, relative, node, app, target):
    top = target.split(".")[0]
    if top in FORBIDDEN.get(app, ()):
        found.append(f"{relative}:{node.lineno} imports {target}: {app} may not depend on {top}")


# Models with one writing module: every create, update or delete of their rows goes through it.
ONE_WRITER = {
    "Suppression": "channels_ingest/email/services.py",
    "RejectedEmail": "channels_ingest/email/services.py",
    "SentEmail": "channels_ingest/email/services.py",
    "ConversationActivity": "inbox/history.py",
    "IngestCount": "channels_ingest/base.py",
}
WRITES = {"create", "bulk_create", "update", "update_or_create", "get_or_create", "delete", "bulk_update"}


def writes_outside_their_writer(root: Path, apps=APPS) -> list:
    """Calls like Model.objects...update(...) on a ONE_WRITER model outside its writing module."""
    found = []
    for _, relative, tree in _product_modules(root, apps):
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in WRITES):
                continue
            chain, current = [], node.func.value
            while isinstance(current, (ast.Attribute, ast.Call)):
                if isinstance(current, ast.Attribute):
                    chain.append(current.attr)
                current = current.value if isinstance(current, ast.Attribute) else current.func
            if isinstance(current, ast.Name) and current.id in ONE_WRITER and "objects" in chain \
                    and str(relative) != ONE_WRITER[current.id]:
                found.append(f"{relative}:{node.lineno} writes {current.id} ({node.func.attr}); "
                             f"only {ONE_WRITER[current.id]} may")
    return found


def test_models_with_one_writer_are_written_only_there():
    assert writes_outside_their_writer(ROOT) == []


def test_the_one_writer_rule_catches_a_direct_write(tmp_path):
    (tmp_path / "channels_ingest" / "email").mkdir(parents=True)
    (tmp_path / "channels_ingest" / "email" / "sender.py").write_text(
        "Suppression.objects.filter(email=e).delete()\nSuppression.objects.filter(email=e).exists()\n")
    (tmp_path / "channels_ingest" / "email" / "services.py").write_text("Suppression.objects.create(email=e)\n")
    assert writes_outside_their_writer(tmp_path, apps=("channels_ingest",)) == [
        "channels_ingest/email/sender.py:1 writes Suppression (delete); only channels_ingest/email/services.py may"]


def test_the_product_keeps_the_layering_rule():
    assert violations(ROOT) == []


def test_the_rule_catches_upward_imports_and_private_names(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    for app in APPS:
        write(f"{app}/__init__.py", "")
    write("crm/models.py", "from inbox.models import Message\n")
    write("inbox/services.py", "from crm.models import Customer\nCustomer._meta.db_table\n\ndef _prepare():\n    pass\n")
    write("inbox/bulk.py", "from . import services\nfrom .services import _prepare\nservices._prepare()\n")
    write("inbox/views.py", "import channels_ingest.email\nfrom analytics import metrics\n")
    write("inbox/tests/test_x.py", "from channels_ingest import anything\n")  # tests are free
    write("channels_ingest/email.py", "from inbox import services\nservices.receive_message()\n")  # allowed

    assert violations(tmp_path) == [
        "crm/models.py:1 imports inbox.models: crm may not depend on inbox",
        "inbox/bulk.py:2 imports inbox.services._prepare, a private name",
        "inbox/bulk.py:3 uses inbox.services._prepare, a private name",
        "inbox/views.py:1 imports channels_ingest.email: inbox may not depend on channels_ingest",
        "inbox/views.py:2 imports analytics: inbox may not depend on analytics",
    ]
