"""Batch ingestion: studio exports into the bronze tables players, store_items and fx_rates."""
