-- The built-in secret store. Values arrive sealed by the backend; this
-- database never sees plaintext. `kv_paths.current_version` is bumped with
-- an upsert so concurrent writers get distinct version numbers.
CREATE TABLE kv_paths (
    mount           TEXT   NOT NULL,
    path            TEXT   NOT NULL,
    current_version BIGINT NOT NULL CHECK (current_version > 0),
    updated_at      BIGINT NOT NULL,
    PRIMARY KEY (mount, path)
);

CREATE TABLE kv_versions (
    mount      TEXT    NOT NULL,
    path       TEXT    NOT NULL,
    version    BIGINT  NOT NULL CHECK (version > 0),
    created_at BIGINT  NOT NULL,
    deleted_at BIGINT,
    destroyed  BOOLEAN NOT NULL DEFAULT FALSE,
    sealed     BYTEA,
    PRIMARY KEY (mount, path, version),
    FOREIGN KEY (mount, path) REFERENCES kv_paths (mount, path) ON DELETE CASCADE
);
