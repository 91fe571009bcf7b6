"""Secrets of a study: invitation tokens, their stored hashes, CSRF tokens.

A token is 32 random bytes, URL-safe base64 (`secrets.token_urlsafe`). The store
keeps only its SHA-256, so a copy of the database does not let anyone rate or
administer. Lookups go through the hash's index, then the two digests are
compared with `hmac.compare_digest`, in constant time.

A CSRF token is HMAC-SHA256(study secret, "csrf:" + token hash): a page can
embed it, a cross-site form cannot know it, and it needs no server-side session,
so it survives a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """Hex SHA-256 of a token (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def same_digest(stored: str, token: str) -> bool:
    """Does `token` hash to `stored`? Constant time in the compared digests."""
    return hmac.compare_digest(stored.encode("ascii"), token_hash(token).encode("ascii"))


def csrf_token(secret: str, stored_hash: str) -> str:
    return hmac.new(secret.encode("ascii"), f"csrf:{stored_hash}".encode("ascii"), hashlib.sha256).hexdigest()


def csrf_ok(secret: str, stored_hash: str, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(csrf_token(secret, stored_hash).encode("ascii"),
                               presented.encode("utf-8", "replace"))
