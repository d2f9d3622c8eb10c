-- Federation (issue #4): POST /api/v1/federation/projects with an Idempotency-Key header creates the project once. A
-- client that repeats the request (its answer was lost, it timed out) gets the project made the first time instead
-- of a second study sent to every invited node. request_sha256 is the SHA-256 of the request's JSON, so the same key
-- with another request is refused instead of answered with a project the client did not ask for. NULLs (no key) are
-- distinct for the unique index on PostgreSQL and H2 alike.
ALTER TABLE fed_project ADD COLUMN idempotency_key VARCHAR(200);
ALTER TABLE fed_project ADD COLUMN request_sha256 VARCHAR(64);
CREATE UNIQUE INDEX uq_fed_project_idempotency ON fed_project (idempotency_key);
