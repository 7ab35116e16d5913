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

-- Resume uploads waiting for Sense: one row per (candidate, resume id), the
-- newest accepted file. fields holds the form's text fields as JSON.
CREATE TABLE IF NOT EXISTS resumes (
    candidate_id TEXT    NOT NULL,
    resume_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    accepted_at  REAL    NOT NULL,
    size         INTEGER NOT NULL,
    fields       BLOB    NOT NULL,
    file         BLOB    NOT NULL,
    UNIQUE (candidate_id, resume_id)
);

CREATE INDEX IF NOT EXISTS resumes_by_age ON resumes (accepted_at);

-- Resume uploads Sense refused for good, kept like dead_letters.
CREATE TABLE IF NOT EXISTS resume_dead_letters (
    candidate_id TEXT    NOT NULL,
    resume_id    TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    failed_at    REAL    NOT NULL,
    status       INTEGER,
    reason       TEXT    NOT NULL,
    fields       BLOB    NOT NULL,
    file         BLOB    NOT NULL,
    UNIQUE (candidate_id, resume_id)
);

-- Write-backs Sense pushed to relay, one row per write-back id, from receipt
-- until purged. A delivered row stays so that a redelivery by Sense gets the
-- first answer again and never reaches the ATS twice. state is "pending"
-- (not yet accepted by the ATS), "delivered" or "dead_lettered"; seq is the
-- order of receipt, in which the write-backs of one subject are delivered.
CREATE TABLE IF NOT EXISTS writebacks (
    id              TEXT    PRIMARY KEY,
    seq             INTEGER NOT NULL,
    type            TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    received_at     REAL    NOT NULL,
    body            BLOB    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL,
    -- The ATS's last HTTP status (NULL: no answer) and the reason it failed.
    status          INTEGER,
    reason          TEXT,
    -- For ENTITY_CREATE: the id the ATS gave the new entity.
    entity_id       TEXT,
    settled_at      REAL
);

CREATE INDEX IF NOT EXISTS writebacks_by_subject
    ON writebacks (state, subject, seq);
CREATE INDEX IF NOT EXISTS writebacks_by_age ON writebacks (state, received_at);
