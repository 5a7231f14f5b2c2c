"""Incident communications rendered from the record (seed 000's templates)."""

from firebreak.comms.render import FORMATS, TEMPLATES, CommsError, build_context, render

__all__ = ["FORMATS", "TEMPLATES", "CommsError", "build_context", "render"]
