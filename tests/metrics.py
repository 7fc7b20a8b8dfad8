"""Reading what `/metrics` exports, with prometheus-client's own parser of its text format."""

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` (`authz_revision_waiters`, `..._total`) with these labels."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"{name} {labels or ''} is not in /metrics")


def by_label(text: str, name: str, label: str) -> dict[str, float]:
    """The samples `name` by the value of their `label` (e.g. a counter's `outcome`)."""
    return {found.labels[label]: float(found.value) for family in text_string_to_metric_families(text)
            for found in family.samples if found.name == name and label in found.labels}
