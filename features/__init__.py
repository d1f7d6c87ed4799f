"""Raw-data contracts, the lending-world simulator, feature definitions and the builder."""
