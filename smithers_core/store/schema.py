"""Table definitions and forward migrations (D5). Each entry of MIGRATIONS is one version."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # version 1
    """
    CREATE TABLE IF NOT EXISTS _smithers_runs (
        run_id TEXT PRIMARY KEY,
        parent_run_id TEXT,
        workflow_name TEXT NOT NULL,
        workflow_path TEXT,
        workflow_hash TEXT,
        status TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        started_at_ms INTEGER,
        finished_at_ms INTEGER,
        heartbeat_at_ms INTEGER,
        runtime_owner_id TEXT,
        cancel_requested_at_ms INTEGER,
        hijack_requested_at_ms INTEGER,
        hijack_target TEXT,
        vcs_type TEXT,
        vcs_root TEXT,
        vcs_revision TEXT,
        error_json TEXT,
        config_json TEXT,
        wake_at_ms INTEGER,
        inbox_seq INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX IF NOT EXISTS _smithers_runs_status_hb ON _smithers_runs (status, heartbeat_at_ms);
    CREATE INDEX IF NOT EXISTS _smithers_runs_parent ON _smithers_runs (parent_run_id);
    CREATE INDEX IF NOT EXISTS _smithers_runs_created ON _smithers_runs (created_at_ms);
    CREATE INDEX IF NOT EXISTS _smithers_runs_owner ON _smithers_runs (runtime_owner_id);
    CREATE INDEX IF NOT EXISTS _smithers_runs_wake ON _smithers_runs (wake_at_ms);

    CREATE TABLE IF NOT EXISTS _smithers_nodes (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        iteration INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        last_attempt INTEGER,
        updated_at_ms INTEGER NOT NULL,
        output_table TEXT NOT NULL DEFAULT '',
        label TEXT,
        PRIMARY KEY (run_id, node_id, iteration)
    );

    CREATE TABLE IF NOT EXISTS _smithers_attempts (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        iteration INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        heartbeat_at_ms INTEGER,
        heartbeat_data_json TEXT,
        error_json TEXT,
        jj_pointer TEXT,
        response_text TEXT,
        jj_cwd TEXT,
        cached INTEGER NOT NULL DEFAULT 0,
        meta_json TEXT,
        PRIMARY KEY (run_id, node_id, iteration, attempt)
    );

    CREATE TABLE IF NOT EXISTS _smithers_frames (
        run_id TEXT NOT NULL,
        frame_no INTEGER NOT NULL,
        created_at_ms INTEGER NOT NULL,
        xml_json TEXT NOT NULL,
        xml_hash TEXT NOT NULL,
        encoding TEXT NOT NULL DEFAULT 'full',
        mounted_task_ids_json TEXT,
        task_index_json TEXT,
        note TEXT,
        PRIMARY KEY (run_id, frame_no)
    );

    CREATE TABLE IF NOT EXISTS _smithers_events (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        timestamp_ms INTEGER NOT NULL,
        type TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        PRIMARY KEY (run_id, seq)
    );

    CREATE TABLE IF NOT EXISTS _smithers_approvals (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        iteration INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        requested_at_ms INTEGER,
        decided_at_ms INTEGER,
        note TEXT,
        decided_by TEXT,
        request_json TEXT,
        decision_json TEXT,
        auto_approved INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (run_id, node_id, iteration)
    );
    CREATE INDEX IF NOT EXISTS _smithers_approvals_status ON _smithers_approvals (status);

    CREATE TABLE IF NOT EXISTS _smithers_signals (
        run_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        signal_name TEXT NOT NULL,
        correlation_id TEXT,
        payload_json TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        received_by TEXT,
        consumed_node_id TEXT,
        consumed_iteration INTEGER,
        consumed_at_ms INTEGER,
        rejected_at_ms INTEGER,
        rejection_json TEXT,
        PRIMARY KEY (run_id, seq)
    );
    CREATE INDEX IF NOT EXISTS _smithers_signals_match
        ON _smithers_signals (run_id, signal_name, correlation_id, received_at_ms);

    CREATE TABLE IF NOT EXISTS _smithers_cron (
        cron_id TEXT PRIMARY KEY,
        pattern TEXT NOT NULL,
        workflow_path TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at_ms INTEGER NOT NULL,
        last_run_at_ms INTEGER,
        next_run_at_ms INTEGER,
        error_json TEXT
    );

    CREATE TABLE IF NOT EXISTS _smithers_ralph (
        run_id TEXT NOT NULL,
        ralph_id TEXT NOT NULL,
        iteration INTEGER NOT NULL DEFAULT 0,
        done INTEGER NOT NULL DEFAULT 0,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, ralph_id)
    );

    CREATE TABLE IF NOT EXISTS _smithers_input (
        run_id TEXT PRIMARY KEY,
        payload_json TEXT NOT NULL
    );

    CREATE TABLE IF NOT EXISTS _smithers_outputs (
        run_id TEXT NOT NULL,
        node_id TEXT NOT NULL,
        iteration INTEGER NOT NULL DEFAULT 0,
        output_table TEXT NOT NULL DEFAULT '',
        payload_json TEXT NOT NULL,
        schema_json TEXT,
        PRIMARY KEY (run_id, node_id, iteration)
    );
    """,
    # version 2: upstream's newer run columns (pause request and cancel attribution)
    """
    ALTER TABLE _smithers_runs ADD COLUMN pause_requested_at_ms INTEGER;
    ALTER TABLE _smithers_runs ADD COLUMN cancel_request_id TEXT;
    ALTER TABLE _smithers_runs ADD COLUMN cancel_request_source TEXT;
    ALTER TABLE _smithers_runs ADD COLUMN cancel_request_client_identity TEXT;
    ALTER TABLE _smithers_runs ADD COLUMN cancel_request_client_pid INTEGER;
    """,
    # version 3: a cron row's IANA time zone (beyond upstream; NULL is UTC)
    """
    ALTER TABLE _smithers_cron ADD COLUMN timezone TEXT;
    """,
    # version 4: webhook deliveries already taken, for replay protection (beyond upstream)
    """
    CREATE TABLE IF NOT EXISTS _smithers_webhook_deliveries (
        webhook_key TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        received_at_ms INTEGER NOT NULL,
        PRIMARY KEY (webhook_key, delivery_id)
    );
    CREATE INDEX IF NOT EXISTS _smithers_webhook_deliveries_age
        ON _smithers_webhook_deliveries (received_at_ms);
    """,
    # version 5: the time-travel audit (upstream's columns, plus the refusal's code and the
    # rewinding process's owner id, beyond upstream), one row per rewindRun call
    """
    CREATE TABLE IF NOT EXISTS _smithers_time_travel_audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        from_frame_no INTEGER,
        to_frame_no INTEGER,
        caller TEXT,
        timestamp_ms INTEGER NOT NULL,
        result TEXT NOT NULL,
        duration_ms INTEGER,
        error_code TEXT,
        owner_id TEXT
    );
    CREATE INDEX IF NOT EXISTS _smithers_time_travel_audit_run
        ON _smithers_time_travel_audit (run_id, caller, timestamp_ms);
    CREATE INDEX IF NOT EXISTS _smithers_time_travel_audit_open
        ON _smithers_time_travel_audit (result);
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
