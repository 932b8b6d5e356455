-- The conversation record (DESIGN.md §10). Written for both SQLite and Postgres: plain
-- TEXT and BIGINT columns, times as Unix milliseconds, item fields as JSON text.
CREATE TABLE record_items (
    session_id   TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    at_ms        BIGINT NOT NULL,
    kind         TEXT   NOT NULL,
    call_id      TEXT,
    agent        TEXT,
    item_key     TEXT,
    cost_nanousd BIGINT NOT NULL DEFAULT 0,
    body         TEXT   NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE INDEX record_items_by_key ON record_items (session_id, item_key);

CREATE TABLE record_sessions (
    session_id    TEXT   PRIMARY KEY,
    scenario      TEXT   NOT NULL,
    user_id       TEXT,
    started_at_ms BIGINT NOT NULL,
    last_at_ms    BIGINT NOT NULL,
    ended_at_ms   BIGINT,
    turns         BIGINT NOT NULL DEFAULT 0,
    tool_calls    BIGINT NOT NULL DEFAULT 0,
    calls         BIGINT NOT NULL DEFAULT 0,
    cost_nanousd  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX record_sessions_by_start ON record_sessions (started_at_ms);
CREATE INDEX record_sessions_by_last ON record_sessions (last_at_ms);

-- Sessions whose record was erased: their later (or still buffered) items are dropped.
CREATE TABLE record_erasures (
    session_id   TEXT   PRIMARY KEY,
    erased_at_ms BIGINT NOT NULL
);
