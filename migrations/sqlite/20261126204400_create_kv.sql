-- The built-in secret store. Values arrive sealed by the backend; this
-- database never sees plaintext. `kv_paths.current_version` is bumped with
-- an upsert so every write gets a distinct version number.
CREATE TABLE kv_paths (
    mount           TEXT    NOT NULL,
    path            TEXT    NOT NULL,
    current_version INTEGER NOT NULL CHECK (current_version > 0),
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (mount, path)
) STRICT;

CREATE TABLE kv_versions (
    mount      TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    version    INTEGER NOT NULL CHECK (version > 0),
    created_at INTEGER NOT NULL,
    deleted_at INTEGER,
    destroyed  INTEGER NOT NULL DEFAULT 0 CHECK (destroyed IN (0, 1)),
    sealed     BLOB,
    PRIMARY KEY (mount, path, version),
    FOREIGN KEY (mount, path) REFERENCES kv_paths (mount, path) ON DELETE CASCADE
) STRICT;
