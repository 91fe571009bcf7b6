"""Documents from files: .txt, .md, .html/.htm and .jsonl (one document a line).

    docs = read_documents(Path("notes.md"))       # [Document(key=".../notes.md", title="notes", ...)]
    docs = read_documents(Path("corpus.jsonl"))   # {"text": ..., "id": optional, "title": optional}

A file that cannot be read, is not UTF-8 or looks binary raises `UnreadableFile`
with the reason; `Store.ingest` reports it and goes on with the other files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from tokenloom.errors import TokenloomError

SUFFIXES = {".txt": "text", ".md": "text", ".markdown": "text", ".html": "html", ".htm": "html", ".jsonl": "jsonl"}


class UnreadableFile(TokenloomError):
    """A file that ingest skips: unreadable, binary, not UTF-8, an unknown kind or malformed JSONL."""


@dataclass(frozen=True)
class Document:
    """One document to store. key identifies it across ingests (re-ingesting a key replaces it)."""

    text: str
    key: str
    title: str = ""
    source: str = ""  # the file it came from ("" for documents given directly)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(f"{self.title}\n{self.text}".encode()).hexdigest()


class _TextOfHTML(HTMLParser):
    """The visible text of an HTML page: tags dropped, <script>/<style> contents dropped, <title> kept apart."""

    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "section", "article", "blockquote"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.title, self._skip, self._in_title = [], "", 0, False

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in self.BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data):
        if self._skip:
            return
        if self._in_title:
            self.title += data
        else:
            self.parts.append(data)

    def text(self) -> str:
        paragraphs = (" ".join(p.split()) for p in "".join(self.parts).split("\n\n"))
        return "\n\n".join(p for p in paragraphs if p)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, visible text) of an HTML document.

    >>> html_to_text("<title>T</title><p>Hi <b>there</b></p><script>x()</script><p>Bye</p>")
    ('T', 'Hi there\\n\\nBye')
    """
    parser = _TextOfHTML()
    parser.feed(html)
    parser.close()
    return " ".join(parser.title.split()), parser.text()


def _decoded(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableFile(f"{path}: cannot read: {error.strerror or error}") from None
    if b"\x00" in data[:8192]:
        raise UnreadableFile(f"{path}: looks binary (NUL bytes); ingest reads UTF-8 .txt, .md, .html, .jsonl")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UnreadableFile(f"{path}: not valid UTF-8 (byte {data[error.start]:#04x} at offset {error.start})") from None


def _jsonl(path: Path, text: str) -> list[Document]:
    docs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UnreadableFile(f"{path}: line {number}: not JSON ({error.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise UnreadableFile(f"{path}: line {number}: needs an object with a string 'text' (and optional 'id', 'title')")
        ident = str(row.get("id", number))
        docs.append(Document(row["text"], f"{path}#{ident}", str(row.get("title", "") or ident), str(path)))
    return docs


def read_documents(path: Path) -> list[Document]:
    """The documents in one file, by its suffix; raises UnreadableFile."""
    path = Path(path).resolve()
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFile(f"{path}: unknown kind {path.suffix or '(no suffix)'!r}; "
                             f"ingest reads {', '.join(sorted(SUFFIXES))}")
    text = _decoded(path)
    if kind == "jsonl":
        return _jsonl(path, text)
    title = path.stem
    if kind == "html":
        html_title, text = html_to_text(text)
        title = html_title or title
    return [Document(text, str(path), title, str(path))]
