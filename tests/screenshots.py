"""Where tests put pictures of what a person sees: always test-artifacts/; the docs' copy in
docs/screenshots/ only with UPDATE_SCREENSHOTS=1, so a test run leaves the checkout unchanged."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def save(name, write, *, docs=False):
    """write(path) writes the picture to a path; called once per place it goes."""
    ARTIFACTS.mkdir(exist_ok=True)
    write(ARTIFACTS / name)
    if docs and os.environ.get("UPDATE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        write(target / name)
