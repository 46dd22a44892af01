"""Schemathesis hooks for scripts/schemathesis.

Some refusals of the contract depend on more than one value, or on the service's own state
or clock, which an OpenAPI description cannot state: a listing `cursor` is valid only as the
service issued it (within the hour); `since` must be earlier than `until` (for a series, than
`until` or now, rounded up to its bucket); a series holds at most 1000 buckets. A generated
request that breaks one of them is valid for the description and rightly refused with 400;
such a "valid data rejected" failure is dropped when the 400 names exactly that rule.

An alert rule's `resolve_below` must not be above its `threshold`, and a channel's URL must
parse (a URL with a port past 65535 or a host with a space fits `^https?://[^/]`); a rule
refused for exactly that is dropped the same way.

Schemathesis also sends a `+` in a query value unencoded, so the service receives a space
(`?phone=+1…` arrives as " 1…"), which the contract refuses with 400 saying to encode `+` as
%2B; that refusal is dropped when the generated value did begin with `+`. Every other failure
stands.
"""

import json
from datetime import datetime, timezone

import schemathesis


def _error(response):
    try:
        return json.loads(response.content).get("error", "")
    except (ValueError, AttributeError):
        return ""


def _window_is_reversed(query):
    """Whether `since` is not before `until`; a missing `until` means now (as in a replay)."""
    since, until = query.get("since"), query.get("until")
    if not isinstance(since, str):
        return False
    try:
        since = datetime.fromisoformat(since)
        if isinstance(until, str):
            return since >= datetime.fromisoformat(until)
        return until is None and since >= datetime.now(timezone.utc)
    except (ValueError, TypeError):
        return False


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or response.status_code != 400:
        return True
    error, query = _error(response), case.query or {}
    if "cursor" in query and error.startswith("cursor: "):
        return False
    name = error.split(":", 1)[0]
    value = query.get(name)
    if (
        "starts with a space, which is what an unencoded + becomes" in error
        and isinstance(value, str)
        and value.startswith("+")
    ):
        return False
    if error == "until: must be later than since" and _window_is_reversed(query):
        return False
    if case.operation.path == "/v1/alerts/rules/{name}" and _refused_for_an_unstated_rule(error, case.body):
        return False
    series = case.operation.path == "/v1/stats/series"
    if series and "since" in query and (
        error == "since: must be earlier than until" or error.startswith("since: the window holds ")
    ):
        return False
    return True


def _refused_for_an_unstated_rule(error, body):
    """Whether an alert rule was refused for a rule no schema states: `resolve_below` above
    `threshold`, or a channel URL that does not parse."""
    if not isinstance(body, dict):
        return False
    if error == "resolve_below: must not be above threshold":
        below, threshold = body.get("resolve_below"), body.get("threshold")
        return isinstance(below, (int, float)) and isinstance(threshold, (int, float)) and below > threshold
    field, _, problem = error.partition(": ")
    return field.startswith("notify[") and field.endswith("].url") and problem.startswith("is not a valid URL")
