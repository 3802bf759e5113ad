"""The embedded default: digits data and two small models trained once and cached."""
