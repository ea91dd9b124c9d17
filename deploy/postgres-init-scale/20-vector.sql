-- Runs once, when the postgres container of compose.scale.yml initialises an empty data volume.
-- pgvector (AMBIENCE_<SERVICE>_INDEX=pgvector) is not a trusted extension: created here by the
-- superuser, so the services' role needs no superuser rights.
CREATE EXTENSION IF NOT EXISTS vector;
