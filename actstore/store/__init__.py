"""The activation store: layout, resumable writer, lazy reader, verification."""

from .reader import ActivationStore, open_store, read_provenance
from .verify import VerifyReport, verify_store
from .writer import StoreWriter

__all__ = ["ActivationStore", "open_store", "read_provenance", "StoreWriter", "VerifyReport", "verify_store"]
