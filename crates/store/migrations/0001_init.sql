-- crsd metadata schema. Times are unix milliseconds (UTC).

CREATE TABLE accounts (
    app_id      INTEGER PRIMARY KEY,
    uin         TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    secret_id   TEXT    NOT NULL UNIQUE,
    secret_key  TEXT    NOT NULL,
    balance     INTEGER NOT NULL CHECK (balance >= 0),
    created_at  INTEGER NOT NULL
);

CREATE TABLE instances (
    id            TEXT    PRIMARY KEY,
    app_id        INTEGER NOT NULL REFERENCES accounts(app_id),
    name          TEXT    NOT NULL,
    project_id    INTEGER NOT NULL,
    zone_id       INTEGER NOT NULL,
    region_id     INTEGER NOT NULL,
    type_id       INTEGER NOT NULL,
    mem_mb        INTEGER NOT NULL,
    status        INTEGER NOT NULL,
    vip           TEXT    NOT NULL,
    port          INTEGER NOT NULL,
    replica_port  INTEGER NOT NULL,
    vpc_id        INTEGER NOT NULL,
    un_vpc_id     TEXT    NOT NULL,
    subnet_id     INTEGER NOT NULL,
    un_subnet_id  TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    deadline      INTEGER NOT NULL,
    auto_renew    INTEGER NOT NULL,
    password_hash TEXT    NOT NULL,
    password_acl  TEXT    NOT NULL,
    admin_secret  TEXT    NOT NULL,
    repl_secret   TEXT    NOT NULL,
    lock_task     INTEGER
);
CREATE INDEX instances_by_account ON instances(app_id, status);
-- A port belongs to at most one live instance.
CREATE UNIQUE INDEX instances_port ON instances(port) WHERE status != -3;
CREATE UNIQUE INDEX instances_replica_port ON instances(replica_port) WHERE status != -3;

CREATE TABLE deals (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES accounts(app_id),
    name        TEXT    NOT NULL,
    zone_id     INTEGER NOT NULL,
    goods_num   INTEGER NOT NULL,
    creator     TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    price       INTEGER NOT NULL,
    detail      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    overdue_at  INTEGER NOT NULL,
    end_at      INTEGER
);
CREATE INDEX deals_by_account ON deals(app_id);

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id      INTEGER NOT NULL REFERENCES accounts(app_id),
    kind        TEXT    NOT NULL,
    instance_id TEXT,
    deal_id     INTEGER,
    status      INTEGER NOT NULL,
    step        INTEGER NOT NULL DEFAULT 0,
    payload     TEXT    NOT NULL,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX tasks_by_status ON tasks(status);
CREATE INDEX tasks_by_account ON tasks(app_id, created_at);

-- Deal and task ids look like the cloud's: six digits and up.
INSERT INTO sqlite_sequence(name, seq) VALUES ('deals', 400000);
INSERT INTO sqlite_sequence(name, seq) VALUES ('tasks', 10000);
