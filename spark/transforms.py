"""Pure DataFrame functions of the Spark job: parsing, validation, identity and per-batch aggregates.

No I/O and no Python UDFs: everything is Spark SQL functions, so it runs in the JVM and works the same on a
streaming and on a static DataFrame (the unit tests use static ones). docs/spark-job.md explains the design.

Validation follows contract §1 with the producer's reading of it (functions/producer/models.py): every broken
rule of a record is listed in its reason, joined by "; ".
"""

from __future__ import annotations

from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import TimestampType

USER_ID_MAX_CHARS: Final = 128
EVENT_TYPE_MAX_CHARS: Final = 64

# Leading/trailing whitespace as Python's str.strip() sees it (every character with str.isspace()).
_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)
# ISO-8601 extended format with a mandatory zone, as the producer accepts it: seconds and fraction optional.
_TIMESTAMP_RE: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}([.,]\d+)?)?(Z|[+-]\d{2}:\d{2})$"
# DATETIME(6) of MySQL 8.4 and MariaDB 10.11 holds 1000-01-01 .. 9999-12-31 (UTC here).
MIN_INSTANT: Final = "1000-01-01 00:00:00"
MAX_INSTANT_EXCLUSIVE: Final = "10000-01-01 00:00:00"
# JSON integers as the variant type names them; 1.0 is a DECIMAL(1,0) there, an integer as in JSON Schema.
_INTEGER_TYPE_RE: Final = r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$"
_SHOWN_CHARS: Final = 60
# Widths of rejected_events' text columns: longer values are cut so that a hostile message cannot fail a batch.
REASON_MAX_CHARS: Final = 2000

# Columns of parse_records' result.
PARSED_COLUMNS: Final = (
    "topic",
    "partition",
    "offset",
    "kafka_ts",
    "is_event",
    "reason",
    "user_id",
    "event_type",
    "event_at",
    "dedup_key",
    "raw_text",
    "raw_bytes",
    "raw_truncated",
    "s3_bucket",
    "s3_key",
    "s3_record_kind",
    "s3_record_number",
)


def _trimmed(text: Column) -> Column:
    return F.trim(text, F.lit(_WHITESPACE))


def _cut(text: Column, limit: int) -> Column:
    return F.left(text, F.lit(limit))


def parse_timestamp(text: Column) -> Column:
    """ISO-8601 text with a zone -> UTC instant to the microsecond (more fraction digits are truncated).

    NULL when the text does not match the accepted form or is not a real date and time. Within the accepted form,
    Spark's cast from text to timestamp reads the instant (its hand-written ISO-8601 parser, several times faster
    than a pattern); it needs seconds and a '.' before the fraction, so the other accepted forms (hh:mm, a ','
    fraction) are brought to it first.
    """
    normalized = F.regexp_replace(text, ",", ".")
    normalized = F.regexp_replace(normalized, r"^(.{10}T\d{2}:\d{2})(Z|[+-])", "$1:00$2")
    # 'YYYY-MM-DDThh:mm:ss...' without a ',' (every timestamp the producer writes) needs no normalization.
    with_seconds = (F.substring(text, 17, 1) == F.lit(":")) & ~text.contains(",")
    return F.when(text.rlike(_TIMESTAMP_RE), F.when(with_seconds, text).otherwise(normalized).try_cast("timestamp"))


def kafka_records(source: DataFrame) -> DataFrame:
    """Kafka source rows -> topic, partition, offset, kafka_ts (arrival time), value (binary)."""
    return source.select(
        "topic",
        "partition",
        "offset",
        F.col("timestamp").alias("kafka_ts"),
        "value",
    )


_FIELDS: Final = ("user_id", "event_type", "timestamp", "game_id", "payload", "event_id")
_CORRUPT: Final = "_corrupt_record"
_JSON_OPTIONS: Final = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT}
# Event fields as VARIANT: each keeps its JSON type (string, integer, object, null) for the rules of contract §1.
_EVENT_SCHEMA: Final = ", ".join(f"{name} VARIANT" for name in _FIELDS) + f", {_CORRUPT} STRING"
# The producer's dead-letter message (docs/producer.md).
_DLQ_FIELDS: Final = (
    "reason",
    "raw",
    "s3_bucket",
    "s3_key",
    "s3_etag",
    "record_kind",
    "record_number",
    "raw_bytes",
    "raw_truncated",
)
_DLQ_SCHEMA: Final = (
    "reason STRING, raw STRING, s3_bucket STRING, s3_key STRING, s3_etag STRING, record_kind STRING, "
    "record_number BIGINT, "
    f"raw_bytes BIGINT, raw_truncated BOOLEAN, {_CORRUPT} STRING"
)


def _t(field: str) -> Column:
    """Variant type name of a field ('STRING', 'BIGINT', 'OBJECT<...>', 'VOID' for JSON null); NULL if absent."""
    return F.col(f"{field}__type")


def _v(field: str) -> Column:
    return F.col(f"{field}__variant")


def _s(field: str) -> Column:
    return F.col(f"{field}__string")


def _present(field: str) -> Column:
    return F.coalesce(_t(field) != F.lit("VOID"), F.lit(False))


def _is_integer(field: str) -> Column:
    return F.coalesce(_t(field).rlike(_INTEGER_TYPE_RE), F.lit(False))


def _is_string(field: str) -> Column:
    return F.coalesce(_t(field) == F.lit("STRING"), F.lit(False))


def _is_object(field: str) -> Column:
    return F.coalesce(_t(field).startswith("OBJECT"), F.lit(False))


def _shown(field: str) -> Column:
    """The offending JSON value for a reason, cut to 60 characters like the producer does."""
    text = F.to_json(_v(field))
    return F.when(F.char_length(text) <= _SHOWN_CHARS, text).otherwise(
        F.concat(F.substring(text, 1, _SHOWN_CHARS - 3), F.lit("..."))
    )


def _length_reason(field: str, text: Column, limit: int) -> Column:
    return F.concat(
        F.lit(f"{field}: is "), F.char_length(text).cast("string"), F.lit(f" characters long, at most {limit} allowed")
    )


def _field_reasons() -> list[Column]:
    """One reason per field (NULL when its rules hold), over the columns of _with_fields."""
    user_text, type_text, type_norm, instant = (
        F.col("user_text"),
        F.col("type_text"),
        F.col("type_norm"),
        F.col("instant"),
    )
    return [
        F.when(~_present("user_id"), F.lit("user_id: required field is missing"))
        .when(_is_integer("user_id"), F.lit(None))
        .when(
            ~_is_string("user_id"), F.concat(F.lit("user_id: must be a string or an integer, got "), _shown("user_id"))
        )
        .when(user_text == "", F.lit("user_id: must not be empty or blank"))
        .when(F.char_length(user_text) > USER_ID_MAX_CHARS, _length_reason("user_id", user_text, USER_ID_MAX_CHARS)),
        F.when(~_present("event_type"), F.lit("event_type: required field is missing"))
        .when(~_is_string("event_type"), F.concat(F.lit("event_type: must be a string, got "), _shown("event_type")))
        .when(type_text == "", F.lit("event_type: must not be empty or blank"))
        .when(
            F.char_length(type_text) > EVENT_TYPE_MAX_CHARS,
            _length_reason("event_type", type_text, EVENT_TYPE_MAX_CHARS),
        )
        .when(
            F.char_length(type_norm) > EVENT_TYPE_MAX_CHARS,
            F.lit(f"event_type: is longer than {EVENT_TYPE_MAX_CHARS} characters once lower-cased"),
        ),
        F.when(~_present("timestamp"), F.lit("timestamp: required field is missing"))
        .when(
            ~_is_string("timestamp"),
            F.concat(F.lit("timestamp: must be an ISO-8601 string, got "), _shown("timestamp")),
        )
        .when(
            ~_s("timestamp").rlike(_TIMESTAMP_RE),
            F.concat(
                F.lit("timestamp: "),
                _shown("timestamp"),
                F.lit(" is not ISO-8601 'YYYY-MM-DDThh:mm[:ss[.fff]]' with a zone ('Z' or +hh:mm/-hh:mm)"),
            ),
        )
        .when(
            instant.isNull(),
            F.concat(F.lit("timestamp: "), _shown("timestamp"), F.lit(" is not a valid date and time")),
        )
        .when(
            (instant < F.lit(MIN_INSTANT).cast("timestamp"))
            | (instant >= F.lit(MAX_INSTANT_EXCLUSIVE).cast("timestamp")),
            F.concat(
                F.lit("timestamp: "),
                _shown("timestamp"),
                F.lit(" is outside the supported range 1000-01-01 .. 9999-12-31 (UTC)"),
            ),
        ),
        F.when(
            _present("game_id") & ~_is_string("game_id") & ~_is_integer("game_id"),
            F.concat(F.lit("game_id: must be a string or an integer, got "), _shown("game_id")),
        ),
        F.when(
            _present("payload") & ~_is_object("payload"),
            F.concat(F.lit("payload: must be a JSON object, got "), _shown("payload")),
        ),
        F.when(~_present("event_id"), F.lit(None))
        .when(~_is_string("event_id"), F.concat(F.lit("event_id: must be a string, got "), _shown("event_id")))
        .when(_trimmed(_s("event_id")) == "", F.lit("event_id: must not be empty or blank")),
    ]


def event_identity(  # noqa: PLR0917 - the six parts of the identity, in the contract's order
    event_id: Column, user_id: Column, event_type: Column, event_at: Column, game_id: Column, payload_json: Column
) -> Column:
    """Contract §3 identity as a 32-byte SHA-256: of the event_id when there is one, else of the normalized tuple."""
    # Each part is prefixed by its length (-1 for NULL): an unambiguous encoding of the tuple.
    parts = [user_id, event_type, F.unix_micros(event_at).cast("string"), game_id, payload_json]
    encoded = F.concat_ws(
        "|",
        *[
            F.concat(F.coalesce(F.char_length(p).cast("string"), F.lit("-1")), F.lit(":"), F.coalesce(p, F.lit("")))
            for p in parts
        ],
    )
    text = F.when(event_id.isNotNull(), F.concat(F.lit("id:"), event_id)).otherwise(F.concat(F.lit("ev:"), encoded))
    return F.unhex(F.sha2(text, 256))


def parse_records(records: DataFrame, dlq_topic: str, raw_max_chars: int) -> DataFrame:
    """Kafka records (kafka_records' columns) -> one row per record with PARSED_COLUMNS.

    Records of `dlq_topic` are the producer's rejections (docs/producer.md, "dead-letter message"): never events,
    their reason and S3 origin are taken from the message. Records of any other topic are validated as events;
    `is_event` says whether the record is a valid event, otherwise `reason` says why not. `dedup_key` is the
    event's identity for valid events; for a dead letter, the S3 record it names (bucket, key, ETag, kind, number),
    so its copies count once; unique per Kafka record for everything else (never deduplicated).

    The work is split into successive projections so that every JSON lookup is computed once per record.
    """
    keys = ["topic", "partition", "offset", "kafka_ts"]
    text = F.col("text")
    decoded = records.select(
        *keys,
        "value",
        F.make_valid_utf8(F.col("value").cast("string")).alias("text"),
        F.is_valid_utf8(F.col("value").cast("string")).alias("valid_utf8"),
        (F.col("topic") == F.lit(dlq_topic)).alias("is_dlq"),
    )
    # One streaming JSON parse per record, into the fields of interest only (each a VARIANT keeping its JSON type).
    with_doc = decoded.select(
        "*",
        F.when(~F.col("is_dlq"), F.from_json(text, _EVENT_SCHEMA, _JSON_OPTIONS)).alias("ev"),
        F.when(F.col("is_dlq"), F.from_json(text, _DLQ_SCHEMA, _JSON_OPTIONS)).alias("dlq"),
    )
    is_object = F.coalesce(
        F.col("ev").isNotNull() & F.col(f"ev.{_CORRUPT}").isNull()
        | F.col("dlq").isNotNull() & F.col(f"dlq.{_CORRUPT}").isNull(),
        F.lit(False),
    )
    with_variants = with_doc.select(
        *keys,
        "value",
        "text",
        "valid_utf8",
        "is_dlq",
        is_object.alias("is_object"),
        *[F.col(f"ev.{name}").alias(f"{name}__variant") for name in _FIELDS],
        *[F.col(f"dlq.{name}").alias(f"{name}__dlq") for name in _DLQ_FIELDS],
    )
    with_fields = (
        with_variants.select(
            "*",
            *[F.schema_of_variant(_v(name)).alias(f"{name}__type") for name in _FIELDS],
            *[
                F.try_variant_get(_v(name), "$", "string").alias(f"{name}__string")
                for name in _FIELDS
                if name != "payload"
            ],
        )
        .select(
            "*",
            _trimmed(_s("user_id")).alias("user_text"),
            _trimmed(_s("event_type")).alias("type_text"),
            parse_timestamp(_s("timestamp")).alias("instant"),
        )
        .withColumn("type_norm", F.lower("type_text"))
    )

    field_reason = F.concat_ws("; ", *_field_reasons())
    event_reason = (
        F.when(F.col("value").isNull(), F.lit("empty message: the Kafka record has no value"))
        .when(~F.col("valid_utf8"), F.lit("not valid JSON: the value is not valid UTF-8"))
        .when(~F.col("is_object") & F.try_parse_json(text).isNull(), F.lit("not valid JSON"))
        .when(~F.col("is_object"), F.lit("not a JSON object"))
        .when(field_reason != "", field_reason)
    )
    dlq_reason = F.coalesce(
        F.when(F.col("is_object"), F.col("reason__dlq")),
        F.lit("dead-letter message without a reason (not a JSON object with 'reason')"),
    )
    checked = with_fields.select(
        "*",
        F.when(F.col("is_dlq"), dlq_reason).otherwise(event_reason).alias("reason"),
    ).withColumn("is_event", ~F.col("is_dlq") & F.col("reason").isNull())

    is_event, is_dlq = F.col("is_event"), F.col("is_dlq")
    from_dlq = is_dlq & F.col("is_object") & F.col("raw__dlq").isNotNull()
    values = checked.select(
        *keys,
        "is_event",
        "is_dlq",
        "reason",
        "value",
        F.when(is_event, F.when(_is_integer("user_id"), _s("user_id")).otherwise(F.col("user_text"))).alias("user_id"),
        F.when(is_event, F.col("type_norm")).alias("event_type"),
        F.when(is_event, F.col("instant")).alias("event_at"),
        F.when(is_event & _present("game_id"), _s("game_id")).alias("game_id"),
        # Canonical JSON of the payload: keys sorted (variant objects are), no whitespace.
        F.when(is_event & _present("payload"), F.to_json(_v("payload"))).alias("payload_json"),
        F.when(is_event & _present("event_id"), _s("event_id")).alias("event_id"),
        F.when(~is_event, F.when(from_dlq, F.col("raw__dlq")).otherwise(F.col("text"))).alias("original_raw"),
        F.when(~is_event, F.coalesce(F.when(from_dlq, F.col("raw_bytes__dlq")), F.octet_length("value"))).alias(
            "raw_bytes"
        ),
        F.when(~is_event, F.coalesce(F.when(is_dlq, F.col("raw_truncated__dlq")), F.lit(False))).alias("dlq_truncated"),
        _cut(F.when(is_dlq, F.col("s3_bucket__dlq")), 255).alias("s3_bucket"),
        _cut(F.when(is_dlq, F.col("s3_key__dlq")), 1024).alias("s3_key"),
        F.when(is_dlq, F.col("s3_etag__dlq")).alias("s3_etag"),
        _cut(F.when(is_dlq, F.col("record_kind__dlq")), 16).alias("s3_record_kind"),
        F.when(is_dlq, F.col("record_number__dlq")).alias("s3_record_number"),
    )
    record_key = F.unhex(
        F.sha2(F.concat_ws(":", F.lit("record"), F.col("topic"), F.col("partition"), F.col("offset")), 256)
    )
    # A dead letter names its S3 record (bucket, key, ETag, kind, number): copies of it — the producer retrying a
    # file that failed half-way, or the same file uploaded again — are one rejected record (contract §3, §4).
    s3_record = [F.col("s3_bucket"), F.col("s3_key"), F.col("s3_etag"), F.col("s3_record_kind")]
    dead_letter_key = F.unhex(
        F.sha2(
            F.concat_ws(
                "|",
                F.lit("dlq"),
                *[F.concat(F.char_length(p).cast("string"), F.lit(":"), p) for p in s3_record],
                F.coalesce(F.col("s3_record_number").cast("string"), F.lit("-")),
            ),
            256,
        )
    )
    names_its_record = F.coalesce(
        F.col("is_dlq") & F.col("s3_bucket").isNotNull() & F.col("s3_key").isNotNull() & F.col("s3_etag").isNotNull(),
        F.lit(False),
    )
    identity = event_identity(
        F.col("event_id"),
        F.col("user_id"),
        F.col("event_type"),
        F.col("event_at"),
        F.col("game_id"),
        F.col("payload_json"),
    )
    return values.select(
        *keys,
        "is_event",
        _cut(F.col("reason"), REASON_MAX_CHARS).alias("reason"),
        "user_id",
        "event_type",
        "event_at",
        F.when(is_event, identity).when(names_its_record, dead_letter_key).otherwise(record_key).alias("dedup_key"),
        _cut(F.col("original_raw"), raw_max_chars).alias("raw_text"),
        "raw_bytes",
        F.when(
            ~is_event,
            F.col("dlq_truncated") | F.coalesce(F.char_length("original_raw") > raw_max_chars, F.lit(False)),
        ).alias("raw_truncated"),
        "s3_bucket",
        "s3_key",
        "s3_record_kind",
        "s3_record_number",
    )


_MICROS_PER_UNIT: Final = {"millisecond": 1_000, "second": 1_000_000, "minute": 60_000_000, "hour": 3_600_000_000}


def interval_micros(interval: str) -> int:
    """'1 hour', '90 seconds', '1.5 minutes' (the settings' interval form) -> microseconds."""
    number, unit = interval.split()
    return round(float(number) * _MICROS_PER_UNIT[unit.lower().removesuffix("s")])


# Column of counted_rows' result: which of its two parts a row belongs to.
ROW_KIND: Final = "row_kind"
RECORD: Final = "record"
NEW_USER_TYPE: Final = "new_user_type"


def _arrival_marked(parsed: DataFrame, window: str) -> DataFrame:
    """The stream with its dedup time (dedup_at) and watermark, hash-partitioned by dedup_key.

    The dedup time is the Kafka arrival time, raised to at least the micro-batch's timestamp - window: then no row
    is ever older than the watermark (max time seen - window), so none is dropped as late, even when a capped
    catch-up reads one partition hours behind another (the watermark is global). Rows arriving in time (the
    normal case) keep their arrival time. current_timestamp() is the micro-batch's timestamp in a stream, kept in
    the offset log: a replay sees it again.
    """
    floor = F.timestamp_micros(F.unix_micros(F.current_timestamp()) - F.lit(interval_micros(window)))
    return (
        parsed.withColumn("dedup_at", F.greatest(F.col("kafka_ts"), floor))
        .withWatermark("dedup_at", window)
        .repartition("dedup_key")
    )


def counted_rows(parsed: DataFrame, window: str) -> DataFrame:
    """What a micro-batch writes: PARSED_COLUMNS + ROW_KIND (+ dedup_at on a stream, to be ignored).

    * row_kind 'record': the records, copies (same dedup_key) arriving within `window` of each other by Kafka
      arrival time counted once: valid events once, and rejected records. On a stream,
      dropDuplicatesWithinWatermark keeps each key in the state store until the watermark passes the key's first
      time + window (see _arrival_marked for the time); docs/spark-job.md, "Identity and duplicates";
    * row_kind 'new_user_type': for every (user_id, event_type) never seen before, one row of the batch with it
      (rows with is_event false among them are not pairs and must be ignored).

    On a stream, the set of (user, type) pairs seen so far is the state of a second deduplication (no watermark:
    kept forever, one entry per pair) — unique users per type are counted by the job, not by the database. Both
    deduplications read one shared, hash-partitioned copy of the parsed batch: every column of the parsed rows is
    kept in both branches on purpose, so that the two exchanges are identical and Spark reuses one
    (ReusedExchange): the Kafka records are read and parsed once. A projection of the pair branch would make the
    optimizer prune that branch's columns below the shared exchange, and each record would be parsed twice.
    On a static DataFrame (tests, backfills) every copy after the first is dropped, and every pair is new.
    """
    if not parsed.isStreaming:
        records = parsed.dropDuplicates(["dedup_key"])
        pairs = parsed.where(F.col("is_event")).dropDuplicates(["user_id", "event_type"])
    else:
        shared = _arrival_marked(parsed, window)
        records = shared.dropDuplicatesWithinWatermark(["dedup_key"])
        pairs = shared.dropDuplicates(["user_id", "event_type"])
    return records.withColumn(ROW_KIND, F.lit(RECORD)).unionByName(pairs.withColumn(ROW_KIND, F.lit(NEW_USER_TYPE)))


def counted_records(rows: DataFrame) -> DataFrame:
    """The records (valid events and rejected records) of counted_rows' result (without row_kind)."""
    return rows.where(F.col(ROW_KIND) == F.lit(RECORD)).drop(ROW_KIND, "dedup_at")


def event_type_aggregates(rows: DataFrame) -> DataFrame:
    """counted_rows' result -> per event_type: event_count (events counted), new_users (pairs seen first)."""
    kind = F.col(ROW_KIND)
    return (
        rows.where(F.col("is_event"))
        .groupBy("event_type")
        .agg(
            F.count_if(kind == F.lit(RECORD)).alias("event_count"),
            F.count_if(kind == F.lit(NEW_USER_TYPE)).alias("new_users"),
        )
    )


def user_aggregates(events: DataFrame) -> DataFrame:
    """Records of one batch -> per user (valid events only): event_count, first_event_at, last_event_at."""
    return (
        events.where(F.col("is_event"))
        .groupBy("user_id")
        .agg(
            F.count(F.lit(1)).alias("event_count"),
            F.min("event_at").alias("first_event_at"),
            F.max("event_at").alias("last_event_at"),
        )
    )


def event_type_minute_aggregates(batch: DataFrame) -> DataFrame:
    """Valid events of one batch -> per (minute of event time, event_type): event_count."""
    return (
        batch.where(F.col("is_event"))
        .groupBy(F.date_trunc("minute", "event_at").alias("minute_start"), "event_type")
        .agg(F.count(F.lit(1)).alias("event_count"))
    )


def rejected_rows(batch: DataFrame) -> DataFrame:
    """Records of one batch that are not valid events, in the columns of rejected_events."""
    return batch.where(~F.col("is_event")).select(
        "reason",
        F.col("topic").alias("kafka_topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("kafka_ts").alias("received_at"),
        "s3_bucket",
        "s3_key",
        "s3_record_kind",
        "s3_record_number",
        "raw_text",
        "raw_bytes",
        "raw_truncated",
    )


def avg_seconds_between_events(event_count: Column, first_event_at: Column, last_event_at: Column) -> Column:
    """(last - first) / (count - 1) in seconds: the telescoping sum of the gaps; NULL for a single event."""
    span_seconds = (F.unix_micros(last_event_at) - F.unix_micros(first_event_at)) / F.lit(1_000_000.0)
    return F.when(event_count > 1, span_seconds / (event_count - 1))


def merge_user_metrics(current: DataFrame, batch: DataFrame) -> DataFrame:
    """The DataFrame form of sink.py's user_metrics merge: counts add up, first is the min, last the max.

    Both inputs have user_id, event_count, first_event_at, last_event_at; the result adds
    avg_seconds_between_events. Used by tests and by the benchmark's ground truth.
    """
    a, b = current.alias("a"), batch.alias("b")
    merged = a.join(b, on="user_id", how="full_outer").select(
        "user_id",
        (F.coalesce(F.col("a.event_count"), F.lit(0)) + F.coalesce(F.col("b.event_count"), F.lit(0))).alias(
            "event_count"
        ),
        F.least(F.col("a.first_event_at"), F.col("b.first_event_at")).alias("first_event_at"),
        F.greatest(F.col("a.last_event_at"), F.col("b.last_event_at")).alias("last_event_at"),
    )
    return merged.withColumn(
        "avg_seconds_between_events",
        avg_seconds_between_events(F.col("event_count"), F.col("first_event_at"), F.col("last_event_at")),
    )


def timestamps_as_text(frame: DataFrame) -> DataFrame:
    """Timestamp columns as 'yyyy-MM-dd HH:mm:ss.SSSSSS' UTC text, which DATETIME(6) takes exactly.

    For the JDBC load: MySQL Connector/J drops the fraction of a java.sql.Timestamp for MariaDB 10.x (it reads
    the server version as 5.5.5), and text also keeps the JVM's time zone out of the way.
    """
    return frame.select(
        *[
            F.date_format(F.col(f.name), "yyyy-MM-dd HH:mm:ss.SSSSSS").alias(f.name)
            if isinstance(f.dataType, TimestampType)
            else F.col(f.name)
            for f in frame.schema.fields
        ]
    )
