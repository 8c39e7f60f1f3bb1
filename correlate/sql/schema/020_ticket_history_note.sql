-- 020_ticket_history_note: why a fetched ticket is judged by its current state only (its state
-- history could not be read); NULL when its history is stored (or it came from a file).
ALTER TABLE tickets ADD COLUMN history_note VARCHAR;
