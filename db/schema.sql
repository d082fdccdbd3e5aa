-- Tables of the `analytics` database (docs/spark-job.md explains the merge that fills them).
--
-- Applied by the administrator on every start of the database (infra/stack.py, docker compose init): idempotent,
-- CREATE TABLE IF NOT EXISTS only. Common SQL of MySQL 8.4 and MariaDB 10.11. Identifiers (user ids, event
-- types) are utf8mb4 with the binary collation: compared exactly, "Ana" and "ana" are two users. Instants are
-- DATETIME(6) in UTC (the job's sessions run with time_zone '+00:00'). The application user may only read and
-- write rows (db/app_user.sql), so staging tables live here and are cleared with DELETE.

-- ---------------------------------------------------------------------------------------------------------------
-- Metrics (contract §5)
-- ---------------------------------------------------------------------------------------------------------------

-- One row per event type: distinct events, and distinct users who produced that type. (The set of (user, type)
-- pairs behind unique_users is kept by the Spark job, in its checkpoint's state store: each batch adds the number
-- of pairs it sees for the first time.)
CREATE TABLE IF NOT EXISTS event_type_metrics (
    event_type   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    total_events BIGINT UNSIGNED NOT NULL,
    unique_users BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (event_type)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per user. avg_seconds_between_events = (last - first) / (count - 1): the sum of the gaps between
-- consecutive events telescopes to last - first, so the three merged columns determine it exactly.
CREATE TABLE IF NOT EXISTS user_metrics (
    user_id                    VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    event_count                BIGINT UNSIGNED NOT NULL,
    first_event_at             DATETIME(6) NOT NULL,
    last_event_at              DATETIME(6) NOT NULL,
    -- Set by the merge from the merged count/first/last (MariaDB refuses a division by a column in a generated
    -- column, so it is not one).
    avg_seconds_between_events DOUBLE NULL,
    PRIMARY KEY (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Events per event type and minute of event time (UTC), for dashboards and the demo's time-series chart: one row
-- per (minute, type) with the distinct events whose timestamp falls in that minute. Merged like the totals (counts
-- add up), so the sum over minutes of a type equals its total_events.
CREATE TABLE IF NOT EXISTS event_type_minute_metrics (
    minute_start DATETIME NOT NULL,
    event_type   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    total_events BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (minute_start, event_type)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Records that are not counted (contract §4): invalid Kafka messages, and the producer's rejections read from
-- the dead-letter topic (then s3_* say where in S3 the record came from). raw_text is cut after
-- REJECTED_RAW_MAX_CHARS characters (default 65,536; raw_truncated says so); raw_bytes is the original size.
CREATE TABLE IF NOT EXISTS rejected_events (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    reason           TEXT NOT NULL,
    kafka_topic      VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kafka_partition  INT NOT NULL,
    kafka_offset     BIGINT NOT NULL,
    received_at      DATETIME(6) NOT NULL,
    s3_bucket        VARCHAR(255) NULL,
    s3_key           VARCHAR(1024) NULL,
    s3_record_kind   VARCHAR(16) NULL,
    s3_record_number BIGINT NULL,
    raw_text         MEDIUMTEXT NULL,
    raw_bytes        BIGINT NULL,
    raw_truncated    BOOLEAN NOT NULL DEFAULT FALSE,
    batch_id         BIGINT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uq_rejected_events_record (kafka_topic, kafka_partition, kafka_offset),
    KEY ix_rejected_events_received_at (received_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- ---------------------------------------------------------------------------------------------------------------
-- Exactly-once bookkeeping of the Spark job
-- ---------------------------------------------------------------------------------------------------------------

-- One row per committed micro-batch, inserted in the same transaction as the batch's merge. query_id is the
-- streaming query's id (kept in its checkpoint), so a batch id of a new checkpoint is never mistaken for an old one.
CREATE TABLE IF NOT EXISTS spark_batch_ledger (
    query_id        CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id        BIGINT NOT NULL,
    query_name      VARCHAR(64) NOT NULL,
    event_rows      BIGINT NOT NULL,
    -- (user, event type) pairs seen for the first time in this batch (= unique_users it added over all types)
    user_type_rows  BIGINT NOT NULL,
    rejected_rows   BIGINT NOT NULL,
    committed_at    DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    -- Seconds the sink spent on the batch: computing and loading the staging rows, and the merge transaction.
    load_seconds    DOUBLE NULL,
    merge_seconds   DOUBLE NULL,
    PRIMARY KEY (query_id, batch_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Upgrade of a ledger created before load_seconds/merge_seconds existed (MySQL 8.4 has no ADD COLUMN IF NOT
-- EXISTS, so the statement is chosen from information_schema).
SET @ledger_upgrade = IF(
    (SELECT COUNT(*) FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'spark_batch_ledger' AND column_name = 'load_seconds') = 0,
    'ALTER TABLE spark_batch_ledger ADD COLUMN load_seconds DOUBLE NULL, ADD COLUMN merge_seconds DOUBLE NULL',
    'DO 0');
PREPARE ledger_upgrade FROM @ledger_upgrade;
EXECUTE ledger_upgrade;
DEALLOCATE PREPARE ledger_upgrade;

-- Staging: Spark's executors bulk-load one batch's aggregates here (JDBC, batched inserts), keyed by batch so a
-- retried load of the same batch cannot be merged twice (the primary keys reject a second copy). The merge reads
-- them set-wise; the job deletes a batch's rows after its commit and any leftovers before a load.
CREATE TABLE IF NOT EXISTS stg_event_type_metrics (
    query_id    CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id    BIGINT NOT NULL,
    event_type  VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    event_count BIGINT UNSIGNED NOT NULL,
    new_users   BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (query_id, batch_id, event_type)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS stg_user_metrics (
    query_id       CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id       BIGINT NOT NULL,
    user_id        VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    event_count    BIGINT UNSIGNED NOT NULL,
    first_event_at DATETIME(6) NOT NULL,
    last_event_at  DATETIME(6) NOT NULL,
    PRIMARY KEY (query_id, batch_id, user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS stg_event_type_minute_metrics (
    query_id     CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id     BIGINT NOT NULL,
    minute_start DATETIME NOT NULL,
    event_type   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    event_count  BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (query_id, batch_id, minute_start, event_type)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE IF NOT EXISTS stg_rejected_events (
    query_id         CHAR(36) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    batch_id         BIGINT NOT NULL,
    reason           TEXT NOT NULL,
    kafka_topic      VARCHAR(249) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kafka_partition  INT NOT NULL,
    kafka_offset     BIGINT NOT NULL,
    received_at      DATETIME(6) NOT NULL,
    s3_bucket        VARCHAR(255) NULL,
    s3_key           VARCHAR(1024) NULL,
    s3_record_kind   VARCHAR(16) NULL,
    s3_record_number BIGINT NULL,
    raw_text         MEDIUMTEXT NULL,
    raw_bytes        BIGINT NULL,
    raw_truncated    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (query_id, batch_id, kafka_topic, kafka_partition, kafka_offset)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
