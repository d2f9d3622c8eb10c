-- Dead-letter administration (REST /api/v1/dead-letters): replay bookkeeping and indexes for the list filters.
-- Portable between PostgreSQL and H2 (MODE=PostgreSQL). V1 already has resolved_at, resolved_by, resolution_note.

-- Replays tried on this letter (a synchronous replay that fails again leaves the letter OPEN and counts here).
ALTER TABLE dead_letter ADD COLUMN replay_count INT DEFAULT 0 NOT NULL;
-- How the replay re-injected the message: outbox row reopened, queued on the outbox, or delivered directly.
ALTER TABLE dead_letter ADD COLUMN replay_outcome VARCHAR(500);

-- The list is filtered by status / time window (newest first) and by event type.
CREATE INDEX ix_dead_letter_status_failed ON dead_letter (status, last_failed_at, id);
CREATE INDEX ix_dead_letter_failed ON dead_letter (last_failed_at, id);
CREATE INDEX ix_dead_letter_type ON dead_letter (event_type, status, id);
