"""Plain-text rules shared by the screens, the API and the live events."""
import re

PREVIEW_CHARS = 140
# How much of a message the preview looks at: its first lines decide it.
PREVIEW_SCAN_CHARS = 4000

QUOTE_HEADER = re.compile(r"^\s*(On .{3,300} wrote:|-{2,}\s*Original Message\s*-{2,}|From: .+)\s*$",
                          re.IGNORECASE)


def split_quoted_text(text: str) -> tuple[str, str]:
    """(new part, quoted history) of a plain-text email. Quoted history starts at
    an "On … wrote:" line, an "Original Message" line or a run of "> " lines that
    lasts to the end of the message. One pass from the end, so a long message costs
    what its length does."""
    lines = (text or "").splitlines()
    # For each line: the next non-blank line after it, and whether every non-blank line after it is quoted.
    next_line, quoted_after = [None] * len(lines), [True] * len(lines)
    following, all_quoted = None, True
    for index in range(len(lines) - 1, -1, -1):
        next_line[index], quoted_after[index] = following, all_quoted
        if lines[index].strip():
            following = lines[index]
            all_quoted = all_quoted and lines[index].lstrip().startswith(">")
    for index, line in enumerate(lines):
        following = next_line[index]
        if QUOTE_HEADER.match(line) and (following is None or following.lstrip().startswith(">") or index > 0):
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:])
        if line.lstrip().startswith(">") and quoted_after[index]:
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:])
    return text or "", ""


def one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    return " ".join((text or "").split())[: int(limit)]


def preview(text: str, subject: str = "", limit: int = PREVIEW_CHARS) -> str:
    """The one-line preview of a message: its new text without quoted history, else its subject."""
    head = (text or "")[:PREVIEW_SCAN_CHARS]
    return one_line(split_quoted_text(head)[0] or head or subject, limit)
