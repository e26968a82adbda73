"""The Flask web layer: thin views over auditor's query functions."""

from web.app import create_app

__all__ = ["create_app"]
