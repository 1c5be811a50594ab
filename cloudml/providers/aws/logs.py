"""The endpoint's CloudWatch log group, `/aws/sagemaker/Endpoints/<name>`."""

from __future__ import annotations

import time
from collections.abc import Iterator

from cloudml.providers.aws.session import AwsSession, aws_errors, is_not_found


def log_group(endpoint: str) -> str:
    return f"/aws/sagemaker/Endpoints/{endpoint}"


def _streams(aws: AwsSession, endpoint: str, limit: int = 5) -> list[str]:
    from botocore.exceptions import ClientError

    try:
        found = aws.logs.describe_log_streams(logGroupName=log_group(endpoint), orderBy="LastEventTime", descending=True, limit=limit)
    except ClientError as exc:
        if is_not_found(exc):
            return []
        raise
    return [s["logStreamName"] for s in found.get("logStreams", [])]


def _last_events(aws: AwsSession, endpoint: str, lines: int) -> list[tuple[int, str, str]]:
    events: list[tuple[int, str, str]] = []
    with aws_errors(f"reading CloudWatch logs of {endpoint}"):
        for stream in _streams(aws, endpoint):
            got = aws.logs.get_log_events(logGroupName=log_group(endpoint), logStreamName=stream, limit=max(lines, 1), startFromHead=False)
            events += [(e["timestamp"], stream, e["message"].rstrip("\n")) for e in got.get("events", [])]
    events.sort(key=lambda e: e[0])
    return events[-lines:] if lines else []


def tail(aws: AwsSession, endpoint: str, lines: int = 100) -> list[str]:
    """The last `lines` lines across the newest log streams, oldest first, each `stream | message`."""
    return [f"{stream} | {message}" for _, stream, message in _last_events(aws, endpoint, lines)]


def follow(aws: AwsSession, endpoint: str, *, lines: int, poll: float = 2.0) -> Iterator[str]:
    """`tail`, then every new line as it arrives (filter_log_events after the last line shown)."""
    from botocore.exceptions import ClientError

    last = _last_events(aws, endpoint, lines)
    since = last[-1][0] + 1 if last else int(time.time() * 1000)
    yield from (f"{stream} | {message}" for _, stream, message in last)
    seen: set[str] = set()
    while True:
        try:
            pages = aws.logs.get_paginator("filter_log_events").paginate(logGroupName=log_group(endpoint), startTime=since)
            for page in pages:
                for event in page.get("events", []):
                    if event["eventId"] in seen:
                        continue
                    seen.add(event["eventId"])
                    since = max(since, event["timestamp"])
                    yield f"{event['logStreamName']} | {event['message'].rstrip()}"
        except ClientError as exc:
            if not is_not_found(exc):
                raise
        time.sleep(poll)
