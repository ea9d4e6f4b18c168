"""Writing run folders: atomic files, plain values for JSON and checkpoints."""

from stem2d.output.files import atomic_path, atomic_write_text, write_json
from stem2d.output.plain import to_plain

__all__ = ["atomic_path", "atomic_write_text", "to_plain", "write_json"]
