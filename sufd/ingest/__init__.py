"""Reading source files into the ledger: parsing, the ingestor, parse workers."""
