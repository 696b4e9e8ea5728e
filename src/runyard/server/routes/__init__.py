"""One module per protocol; each translates and calls the same services."""
