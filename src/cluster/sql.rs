//! The lease and the fence, as SQL that PostgreSQL enforces.
//!
//! One row, `fg_lease`, names the leader and its epoch. A node takes it
//! only once it has lapsed by the database's clock, and taking it adds one
//! to the epoch: epochs only grow. The leader renews it every third of the
//! lease, only while it is still its own and unlapsed.
//!
//! The fence: a leader's transaction starts with `SET LOCAL
//! floodguard.epoch = <its epoch>`; a statement trigger on every table the
//! leader writes (`fg_fence`) checks that epoch against the lease row,
//! holding the row `FOR SHARE` until the transaction ends, and refuses the
//! write (SQLSTATE `FG001`) once another epoch holds it. A takeover
//! (an UPDATE of the row) therefore waits for a transaction of the old
//! leader in progress to end, and every transaction of the old leader
//! after it is refused: a paused or partitioned leader can neither send
//! (an outbox row is marked `sending` by such a write before the request)
//! nor change state once a newer leader exists. A session the old leader
//! left idle inside a transaction (frozen mid-way) is ended by the server
//! after `idle_in_transaction_session_timeout`, which the nodes set below
//! the lease, so a frozen leader cannot hold the row and block the takeover.
//! Writes without the setting — an operator's ack, dispose or silence on
//! any node, a node's own engine cursor — pass.
//!
//! `fg_changes` counts operators' acts on alerts, silences and materials
//! made on any node: the leader reads it at the start of each of its
//! transactions and re-reads its memory of the alerts when it moved.

/// Made at every start (idempotent), before the state's migrations.
pub const SETUP: &str = "
CREATE TABLE IF NOT EXISTS fg_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    node TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    acquired_at TIMESTAMPTZ NOT NULL,
    renewed_at TIMESTAMPTZ NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS fg_changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL
);
INSERT INTO fg_changes (id, seq) VALUES (1, 0) ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION fg_fence() RETURNS trigger LANGUAGE plpgsql AS $fence$
DECLARE
    mine TEXT := current_setting('floodguard.epoch', true);
    held BIGINT;
BEGIN
    IF mine IS NULL OR mine = '' THEN
        RETURN NULL;
    END IF;
    IF current_setting('floodguard.fence_checked', true) = mine THEN
        RETURN NULL;
    END IF;
    SELECT epoch INTO held FROM fg_lease WHERE id = 1 FOR SHARE;
    IF held IS DISTINCT FROM mine::BIGINT THEN
        RAISE EXCEPTION 'floodguard: fenced: epoch % no longer leads (epoch % does)', mine, held
            USING ERRCODE = 'FG001';
    END IF;
    PERFORM set_config('floodguard.fence_checked', mine, true);
    RETURN NULL;
END
$fence$;
";

/// The schema, the lease table and the fence function, made under one lock
/// in one implicit transaction (a multi-statement batch): PostgreSQL's
/// `IF NOT EXISTS` does not keep two connections making the same table at
/// once from failing (a daemon's lease keeper and its stores, two nodes
/// starting together). `extra` runs under the same lock.
pub fn setup(extra: &str) -> String {
    format!("SELECT pg_advisory_xact_lock(742011); {ENSURE_SCHEMA} {SETUP} {extra}")
}

/// The alert store's transactions (the leader's and operators' acts on
/// any node) take turns on this lock, so the leader, reading `fg_changes`
/// first, always sees the acts committed before it and none can slip in
/// between its read and its writes. One lock per schema: districts sharing
/// a database do not wait for each other.
pub const ALERTS_TURN: &str = "SELECT pg_advisory_xact_lock(742010, hashtext(current_schema()))";

/// Attaches the fence to `table` (in the migration that makes the table).
pub fn fence(table: &str) -> String {
    format!(
        "DROP TRIGGER IF EXISTS fg_fence ON {table};
         CREATE TRIGGER fg_fence BEFORE INSERT OR UPDATE OR DELETE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION fg_fence();"
    )
}

/// Starts a leader's transaction under `epoch` (one round trip).
pub fn begin_fenced(epoch: i64) -> String {
    format!("BEGIN; SET LOCAL floodguard.epoch = '{epoch}'")
}

/// Takes the lease if it has lapsed (or was never taken): `$1` node, `$2`
/// lease in ms. Returns (epoch, acquired_at ns) when taken, no row when
/// another holds it.
pub const ACQUIRE: &str = "
INSERT INTO fg_lease AS l (id, node, epoch, acquired_at, renewed_at, expires_at)
VALUES (1, $1, 1, clock_timestamp(), clock_timestamp(), clock_timestamp() + $2::BIGINT * interval '1 millisecond')
ON CONFLICT (id) DO UPDATE SET
    node = EXCLUDED.node,
    epoch = l.epoch + 1,
    acquired_at = EXCLUDED.acquired_at,
    renewed_at = EXCLUDED.renewed_at,
    expires_at = EXCLUDED.expires_at
WHERE l.expires_at <= clock_timestamp()
RETURNING epoch, (EXTRACT(EPOCH FROM acquired_at) * 1e9)::BIGINT";

/// The lease as it stands: node, epoch, acquired_at (ns), ms left by the
/// database's clock (≤ 0: lapsed).
pub const READ: &str = "
SELECT node, epoch, (EXTRACT(EPOCH FROM acquired_at) * 1e9)::BIGINT,
       (EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000)::BIGINT
FROM fg_lease WHERE id = 1";

/// Renews the lease while it is still `$1`'s at epoch `$2` and unlapsed;
/// `$3` the lease in ms. One row when renewed.
pub const RENEW: &str = "
UPDATE fg_lease SET renewed_at = clock_timestamp(),
    expires_at = clock_timestamp() + $3::BIGINT * interval '1 millisecond'
WHERE id = 1 AND node = $1 AND epoch = $2 AND expires_at > clock_timestamp()
RETURNING epoch";

/// Gives the lease up at a clean stop (a standby takes it at once).
pub const RELEASE: &str = "
UPDATE fg_lease SET expires_at = clock_timestamp()
WHERE id = 1 AND node = $1 AND epoch = $2 AND expires_at > clock_timestamp()";

/// Session settings of every connection to the state (`state::pg::Conn`):
/// a session left inside a transaction (a frozen process) is ended well
/// within the lease, so it cannot hold the lease row or other rows.
pub fn session_setup(lease: std::time::Duration) -> String {
    let idle = (lease.as_millis() / 2).max(500);
    // `client_min_messages`: the idempotent setup's "already exists,
    // skipping" notices are not worth a log line per connection.
    format!(
        "SET idle_in_transaction_session_timeout = {idle}; SET lock_timeout = {idle}; SET client_min_messages = warning"
    )
}

/// The state schema named by the URL's `search_path` (a district's, in a
/// city where one PostgreSQL serves several), made when missing.
pub const ENSURE_SCHEMA: &str = "
DO $schema$
DECLARE
    wanted TEXT := trim(both '\" ' from split_part(current_setting('search_path'), ',', 1));
BEGIN
    IF current_schema() IS NULL AND wanted <> '' AND wanted <> '$user' THEN
        EXECUTE format('CREATE SCHEMA IF NOT EXISTS %I', wanted);
    END IF;
END
$schema$;
";
