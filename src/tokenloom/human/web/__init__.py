"""The rating app: FastAPI, server-rendered pages, a small JSON API (see app.py)."""

from tokenloom.human.web.app import create_app

__all__ = ["create_app"]
