-- Consultation service on top of the relay (issue #5 section 5): one row per consultation request a level's service
-- took. The first hospital to accept wins: the OPEN -> ACCEPTED update is conditional, so two accepts at the same
-- moment give one winner.
CREATE TABLE relay_consultation (
    consultation_id VARCHAR(100)             NOT NULL PRIMARY KEY,
    requester       VARCHAR(200)             NOT NULL,
    request_body    VARCHAR                  NOT NULL,
    offered_to      VARCHAR(4000)            NOT NULL,
    status          VARCHAR(20)              NOT NULL,
    accepted_by     VARCHAR(200),
    created_at      TIMESTAMP WITH TIME ZONE NOT NULL,
    deadline        TIMESTAMP WITH TIME ZONE NOT NULL,
    decided_at      TIMESTAMP WITH TIME ZONE,
    CONSTRAINT ck_relay_consultation_status CHECK (status IN ('OPEN', 'ACCEPTED', 'ESCALATED', 'UNANSWERED'))
);
CREATE INDEX ix_relay_consultation_open ON relay_consultation (status, deadline);
