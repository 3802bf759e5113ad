"""The activation store: layout & schema, resumable writer, lazy reader, verification, xarray access."""

from .labelled import open_dataset, open_datatree
from .reader import ActivationStore, open_store, read_provenance
from .verify import VerifyReport, verify_store
from .writer import StoreWriter

__all__ = ["ActivationStore", "open_store", "read_provenance", "open_dataset", "open_datatree", "StoreWriter",
           "VerifyReport", "verify_store"]
