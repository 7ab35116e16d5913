-- The outbox holds one pending row per (entity, record id): the newest
-- accepted version. seq identifies that version, so that a batch in flight
-- can settle only the version it carried.
CREATE TABLE IF NOT EXISTS outbox (
    entity      TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    accepted_at REAL    NOT NULL,
    size        INTEGER NOT NULL,
    body        BLOB    NOT NULL,
    -- "upsert" (a whole entity) or "patch" (only the fields present).
    kind        TEXT    NOT NULL DEFAULT 'upsert',
    UNIQUE (entity, record_id)
);

-- Claims go oldest first; the covering columns let depth, size and age be
-- read without touching the bodies.
CREATE INDEX IF NOT EXISTS outbox_by_age ON outbox (entity, accepted_at, size);

-- Records Sense refused for good. At most one per (entity, record id): a
-- newer refused version replaces the older one, and a newer delivered
-- version removes it, so a replay can never put Sense back in an older state.
CREATE TABLE IF NOT EXISTS dead_letters (
    entity      TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    failed_at   REAL    NOT NULL,
    status      INTEGER,
    reason      TEXT    NOT NULL,
    body        BLOB    NOT NULL,
    kind        TEXT    NOT NULL DEFAULT 'upsert',
    UNIQUE (entity, record_id)
);

-- A digest of the last whole version Sense accepted for each record, so that
-- an identical version arriving again is not sent again. A missing row only
-- means "unknown": the next version is sent.
CREATE TABLE IF NOT EXISTS fingerprints (
    entity      TEXT    NOT NULL,
    record_id   TEXT    NOT NULL,
    digest      BLOB    NOT NULL,
    PRIMARY KEY (entity, record_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
