-- Staging tables of the example receiving systems (finance, materials). In production these live in the
-- receiving system's own database (a named datasource); the hub only needs a unique event_id column.
CREATE TABLE finance_staging (
    event_id     VARCHAR(200)             NOT NULL PRIMARY KEY,
    event_type   VARCHAR(200)             NOT NULL,
    source       VARCHAR(100)             NOT NULL,
    hospital     VARCHAR(100)             NOT NULL,
    event_key    VARCHAR(200),
    occurred_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    payload      VARCHAR                  NOT NULL,
    loaded_at    TIMESTAMP WITH TIME ZONE NOT NULL
);
CREATE TABLE materials_staging (
    event_id     VARCHAR(200)             NOT NULL PRIMARY KEY,
    event_type   VARCHAR(200)             NOT NULL,
    source       VARCHAR(100)             NOT NULL,
    hospital     VARCHAR(100)             NOT NULL,
    event_key    VARCHAR(200),
    occurred_at  TIMESTAMP WITH TIME ZONE NOT NULL,
    payload      VARCHAR                  NOT NULL,
    loaded_at    TIMESTAMP WITH TIME ZONE NOT NULL
);
