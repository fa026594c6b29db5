"""PrometheusMetrics: each on a registry of its own (many side by side), bounded labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from cryptmail.metrics import PrometheusMetrics


def _samples(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for s in family.samples
    }


def test_two_servers_in_one_process_count_apart() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.delivered("delivered", 0.1)
    first.delivered("deferred", 0.2)
    second.delivered("delivered", 0.1)
    a, b = _samples(first), _samples(second)
    assert a[("cryptmail_deliveries_total", frozenset({("result", "delivered")}))] == 1
    assert a[("cryptmail_deliveries_total", frozenset({("result", "deferred")}))] == 1
    assert b[("cryptmail_deliveries_total", frozenset({("result", "deferred")}))] == 0
    assert a[("cryptmail_delivery_seconds_count", frozenset())] == 2


def test_unknown_commands_protocols_and_results_are_other() -> None:
    metrics = PrometheusMetrics()
    metrics.imap_command("fetch", 0.01)
    metrics.imap_command("Secret-Folder", 0.01)
    metrics.login("imap", "failed")
    metrics.login("gopher", "refused")
    metrics.blob_operation("read", "error", 0.5)
    found = _samples(metrics)
    command = "cryptmail_imap_command_seconds_count"
    assert found[(command, frozenset({("command", "FETCH")}))] == 1
    assert found[(command, frozenset({("command", "other")}))] == 1
    logins = "cryptmail_logins_total"
    assert found[(logins, frozenset({("protocol", "imap"), ("result", "failed")}))] == 1
    assert found[(logins, frozenset({("protocol", "other"), ("result", "refused")}))] == 1
    refusals = ("cryptmail_throttle_refusals_total", frozenset({("protocol", "other")}))
    assert found[refusals] == 1
    assert found[("cryptmail_blob_errors_total", frozenset({("operation", "read")}))] == 1


def test_gauges_are_read_at_scrape_time() -> None:
    load = [3]
    metrics = PrometheusMetrics(kdf_load=lambda: load[0], pool_use=lambda: (2, 5))
    assert _samples(metrics)[("cryptmail_argon2_load", frozenset())] == 3
    load[0] = 0
    found = _samples(metrics)
    assert found[("cryptmail_argon2_load", frozenset())] == 0
    assert found[("cryptmail_db_connections", frozenset({("state", "in_use")}))] == 2
    assert found[("cryptmail_db_connections", frozenset({("state", "idle")}))] == 5
