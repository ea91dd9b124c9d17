"""Text in images: OCR lines (rapidocr) stored in PostgreSQL, found again by fuzzy text search."""
