-- Runs once, when the postgres container initialises an empty data volume.
-- The OCR index needs trigram similarity (pg_trgm) and Double Metaphone / Levenshtein
-- (fuzzystrmatch). Both are trusted extensions, so the services' migrations could create them
-- too; creating them here means a role without CREATE rights on the database still works.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS fuzzystrmatch;
