//! The schema of `state.db`: migrations, applied in order by
//! [`super::store::Store`]. A migration is never edited once shipped; a
//! change is a new entry (the outbox's tables live here too, as they share
//! the file).

/// Schema versions, applied in order; `PRAGMA user_version` records how far.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: alerts, events, silences, notifications
    "CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        site TEXT NOT NULL,
        site_name TEXT NOT NULL,
        site_kind TEXT NOT NULL,
        street TEXT NOT NULL,
        rule TEXT NOT NULL,
        rule_name TEXT NOT NULL,
        state TEXT NOT NULL,
        level TEXT,
        peak_level TEXT,
        value REAL,
        threshold REAL,
        unit TEXT NOT NULL,
        peak_value REAL,
        peak_at INTEGER,
        started_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        acked_at INTEGER,
        acked_by TEXT,
        disposed_at INTEGER,
        disposed_by TEXT,
        resolved_at INTEGER,
        notified_level TEXT,
        last_notified_at INTEGER,
        escalation_step INTEGER NOT NULL,
        next_escalation_at INTEGER,
        next_repeat_at INTEGER,
        card TEXT,
        trend_per_hour REAL,
        eta_level TEXT,
        eta_seconds REAL
     );
     CREATE INDEX alerts_active ON alerts (state) WHERE state != 'resolved';
     CREATE INDEX alerts_started ON alerts (started_at);
     CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        alert_id INTEGER NOT NULL REFERENCES alerts(id),
        ts INTEGER NOT NULL,
        event TEXT NOT NULL,
        level TEXT,
        by TEXT,
        note TEXT
     );
     CREATE INDEX events_alert ON events (alert_id, id);
     CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        matchers TEXT NOT NULL,
        starts_at INTEGER NOT NULL,
        ends_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        comment TEXT NOT NULL,
        created_at INTEGER NOT NULL
     );
     CREATE TABLE notifications (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        body TEXT NOT NULL
     );
     CREATE TABLE pending_intents (
        id INTEGER PRIMARY KEY,
        team TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        wait_ns INTEGER NOT NULL,
        body TEXT NOT NULL
     );",
    // 2: the outbox of the notification channels, its delivery log, ack-link nonces
    "ALTER TABLE notifications ADD COLUMN enqueued INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        notification_id INTEGER NOT NULL,
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        recipient_name TEXT NOT NULL,
        team TEXT NOT NULL,
        body TEXT NOT NULL,
        idempotency_key TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER,
        merged_into INTEGER,
        last_error TEXT
     );
     CREATE INDEX outbox_due ON outbox (channel, state, next_attempt_at);
     CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL REFERENCES outbox(id),
        attempt INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        outcome TEXT,
        response TEXT
     );
     CREATE INDEX deliveries_outbox ON deliveries (outbox_id);
     CREATE TABLE ack_tokens (
        nonce TEXT PRIMARY KEY,
        alert_id INTEGER NOT NULL,
        member TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        used_at INTEGER
     );",
    // 3: how far the engine's judgements are on record, and points made by
    // a transaction until the spool has them
    "CREATE TABLE cursors (
        name TEXT PRIMARY KEY,
        segment INTEGER NOT NULL,
        offset INTEGER NOT NULL
     );
     CREATE TABLE points_pending (
        id INTEGER PRIMARY KEY,
        lines TEXT NOT NULL
     );
     ALTER TABLE notifications ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX notifications_unqueued ON notifications (priority DESC, id) WHERE enqueued = 0;
     ALTER TABLE outbox ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX outbox_open ON outbox (state, channel, next_attempt_at, priority, created_at)
        WHERE state IN ('queued', 'sending');
     CREATE INDEX outbox_recipient ON outbox (channel, recipient) WHERE state = 'queued';",
    // 4: robot rows name their robot (`robot:<team>#<n>`) instead of holding
    // its URL and signing key; stored errors that may name a URL with its
    // key are dropped (new ones are stored redacted); indexes for the daily
    // pruning of what is older than `state.retention`.
    "UPDATE outbox SET body = json_set(json_remove(body, '$.secret'), '$.to', 'robot:' || recipient)
        WHERE channel IN ('wecom', 'dingtalk', 'webhook') AND json_extract(body, '$.to') NOT LIKE 'robot:%';
     UPDATE deliveries SET response = '(removed at upgrade: it may have named a key)' WHERE response LIKE '%://%';
     UPDATE outbox SET last_error = '(removed at upgrade: it may have named a key)' WHERE last_error LIKE '%://%';
     CREATE INDEX outbox_created ON outbox (created_at);
     CREATE INDEX ack_tokens_created ON ack_tokens (created_at);
     CREATE INDEX alerts_resolved ON alerts (resolved_at) WHERE state = 'resolved';
     CREATE INDEX notifications_created ON notifications (created_at);",
    // 5: the command center's records: issues and returns of flood
    // materials, drills (notify-test)
    "CREATE TABLE IF NOT EXISTS material_moves (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        depot TEXT NOT NULL,
        item TEXT NOT NULL,
        kind TEXT NOT NULL,
        quantity REAL NOT NULL,
        alert_id INTEGER,
        by TEXT NOT NULL,
        note TEXT
     );
     CREATE INDEX IF NOT EXISTS material_moves_alert ON material_moves (alert_id) WHERE alert_id IS NOT NULL;
     CREATE TABLE IF NOT EXISTS drills (
        id INTEGER PRIMARY KEY,
        ts INTEGER NOT NULL,
        team TEXT NOT NULL,
        team_name TEXT NOT NULL,
        results TEXT NOT NULL
     );",
    // 6: notifications that reach a person — carrier budgets (what each
    // recipient was sent, holds after a provider's limit answer), delivery
    // receipts and call results on the outbox rows, the alerts each row
    // tells of, voice follow-ups of alerts, refused credentials
    "ALTER TABLE outbox ADD COLUMN provider_id TEXT;
     ALTER TABLE outbox ADD COLUMN receipt TEXT;
     ALTER TABLE outbox ADD COLUMN receipt_at INTEGER;
     ALTER TABLE outbox ADD COLUMN receipt_note TEXT;
     ALTER TABLE outbox ADD COLUMN check_at INTEGER;
     ALTER TABLE outbox ADD COLUMN sent_bytes INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE outbox ADD COLUMN part_max INTEGER;
     ALTER TABLE outbox ADD COLUMN fallback_of INTEGER;
     ALTER TABLE outbox ADD COLUMN rerouted_to INTEGER;
     ALTER TABLE outbox ADD COLUMN held TEXT;
     CREATE INDEX outbox_checks ON outbox (check_at) WHERE check_at IS NOT NULL;
     CREATE INDEX outbox_provider ON outbox (channel, provider_id) WHERE provider_id IS NOT NULL;
     CREATE TABLE outbox_alerts (
        alert_id INTEGER NOT NULL,
        outbox_id INTEGER NOT NULL,
        PRIMARY KEY (alert_id, outbox_id)
     ) WITHOUT ROWID;
     INSERT OR IGNORE INTO outbox_alerts (alert_id, outbox_id)
        SELECT j.value, o.id FROM outbox o, json_each(o.body, '$.alert_ids') j;
     CREATE TABLE budget_spends (
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        at INTEGER NOT NULL,
        outbox_id INTEGER
     );
     CREATE INDEX budget_spends_recipient ON budget_spends (channel, recipient, at);
     INSERT INTO budget_spends (channel, recipient, at, outbox_id)
        SELECT channel, recipient, sent_at, id FROM outbox WHERE sent_at IS NOT NULL;
     CREATE TABLE budget_holds (
        channel TEXT NOT NULL,
        recipient TEXT NOT NULL,
        until INTEGER NOT NULL,
        reason TEXT NOT NULL,
        PRIMARY KEY (channel, recipient)
     );
     CREATE TABLE channel_alarms (
        channel TEXT PRIMARY KEY,
        since INTEGER NOT NULL,
        reason TEXT NOT NULL
     );
     ALTER TABLE alerts ADD COLUMN voice_step INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE alerts ADD COLUMN voice_level TEXT;
     ALTER TABLE alerts ADD COLUMN next_voice_at INTEGER;",
    // 7: the leader's epoch that started a send (a row left `sending` by a
    // deposed leader is told from one of the leader's own)
    "ALTER TABLE outbox ADD COLUMN epoch INTEGER;",
];
