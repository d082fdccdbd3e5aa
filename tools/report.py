"""Print the pipeline's current metrics from MySQL: `make report` (tables) or `make report ARGS=--json`.

Reads as the application user (MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD, MYSQL_DATABASE; defaults
127.0.0.1:3306, analytics/analytics, analytics).
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import json
import sys
from typing import Any

import pymysql
import pymysql.cursors
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from rich.console import Console
from rich.table import Table


class ReportSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    mysql_host: str = "127.0.0.1"
    mysql_port: int = Field(3306, ge=1, le=65_535)
    mysql_user: str = "analytics"
    mysql_password: SecretStr = SecretStr("analytics")
    mysql_database: str = "analytics"


QUERIES: dict[str, str] = {
    "totals": """
        SELECT (SELECT COALESCE(SUM(total_events), 0) FROM event_type_metrics) AS events,
               (SELECT COUNT(*) FROM user_metrics) AS users,
               (SELECT COUNT(*) FROM event_type_metrics) AS event_types,
               (SELECT COUNT(*) FROM rejected_events) AS rejected
    """,
    "event_types": """
        SELECT event_type, total_events, unique_users
        FROM event_type_metrics ORDER BY total_events DESC, event_type LIMIT %(limit)s
    """,
    "top_users": """
        SELECT user_id, event_count, first_event_at, last_event_at, avg_seconds_between_events
        FROM user_metrics ORDER BY event_count DESC, user_id LIMIT %(limit)s
    """,
    "events_per_minute": """
        SELECT minute_start, event_type, total_events
        FROM event_type_minute_metrics ORDER BY minute_start DESC, event_type LIMIT %(limit)s
    """,
    "rejected_by_reason": """
        SELECT reason, COUNT(*) AS records, MAX(received_at) AS last_seen
        FROM rejected_events GROUP BY reason ORDER BY records DESC, reason LIMIT %(limit)s
    """,
    "last_batches": """
        SELECT query_name, batch_id, event_rows, user_type_rows AS new_user_types, rejected_rows, committed_at,
               ROUND(load_seconds + merge_seconds, 3) AS seconds, load_seconds, merge_seconds
        FROM spark_batch_ledger ORDER BY committed_at DESC, batch_id DESC LIMIT %(limit)s
    """,
}

TITLES = {
    "event_types": "Event types (all time)",
    "top_users": "Most active users",
    "events_per_minute": "Latest minutes of event time (events per type)",
    "rejected_by_reason": "Rejected records by reason",
    "last_batches": "Last committed Spark micro-batches",
}


def connect(settings: ReportSettings, **options: Any) -> pymysql.connections.Connection[Any]:
    """A connection as the application user (read-only use)."""
    return pymysql.connect(
        host=settings.mysql_host,
        port=settings.mysql_port,
        user=settings.mysql_user,
        password=settings.mysql_password.get_secret_value(),
        database=settings.mysql_database,
        connect_timeout=10,
        **options,
    )


def fetch(settings: ReportSettings, limit: int) -> dict[str, list[dict[str, Any]]]:
    connection = connect(settings, cursorclass=pymysql.cursors.DictCursor)
    try:
        with connection.cursor() as cursor:
            result: dict[str, list[dict[str, Any]]] = {}
            for name, sql in QUERIES.items():
                cursor.execute(sql, {"limit": limit})
                result[name] = list(cursor.fetchall())
            return result
    finally:
        connection.close()


def plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render(report: dict[str, list[dict[str, Any]]], console: Console) -> None:
    totals = report["totals"][0]
    console.print(
        f"[bold]{plain(totals['events']):,}[/] events from [bold]{totals['users']:,}[/] users in "
        f"[bold]{totals['event_types']}[/] event types; [bold]{totals['rejected']:,}[/] records rejected"
    )
    for name, title in TITLES.items():
        rows = report[name]
        table = Table(title=title, title_justify="left")
        if not rows:
            console.print(f"{title}: (none yet)")
            continue
        for column in rows[0]:
            table.add_column(column, justify="right" if not isinstance(rows[0][column], str) else "left")
        for row in rows:
            table.add_row(*(cell(plain(value)) for value in row.values()))
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    parser.add_argument("--limit", type=int, default=10, help="rows per table (default 10)")
    args = parser.parse_args(argv)
    settings = ReportSettings()
    try:
        report = fetch(settings, args.limit)
    except pymysql.err.OperationalError as exc:
        print(
            f"cannot read the metrics from MySQL at {settings.mysql_host}:{settings.mysql_port}/"
            f"{settings.mysql_database} as {settings.mysql_user}: {exc.args[-1]}. Is the stack up (`make status`)?",
            file=sys.stderr,
        )
        return 1
    if args.json:
        print(json.dumps({k: [{c: plain(v) for c, v in r.items()} for r in rows] for k, rows in report.items()}))
    else:
        render(report, Console())
    return 0


if __name__ == "__main__":
    sys.exit(main())
