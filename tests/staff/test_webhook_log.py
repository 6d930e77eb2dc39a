"""The dashboard's webhook delivery log: every delivery, a page at a time, filtered by organisation, endpoint and
state, so that a failed delivery the DPO is emailed about can be found and redelivered however many came since."""

import pytest
from django.db import connection
from django.urls import reverse

from requests_app import selectors
from requests_app.models import Organisation, WebhookDelivery, WebhookEndpoint
from tests.conftest import login_staff
from tests.factories import staff_in_role


@pytest.fixture
def log():
    """One failed delivery to an operator's endpoint, behind 250 newer ones to a busier organisation's."""
    operator = Organisation.objects.create(name="Mobile Operator SA")
    busy = Organisation.objects.create(name="Busy MVNO")
    failing = WebhookEndpoint.objects.create(organisation=operator, url="https://portal.example.com/hooks")
    busy_endpoint = WebhookEndpoint.objects.create(organisation=busy, url="https://busy.example.com/hooks")
    failed = WebhookDelivery.objects.create(
        endpoint=failing, event="request.created", payload={"reference": "DSR-2026-00001"}, status="failed", attempts=20,
        last_status_code=500,
    )
    WebhookDelivery.objects.bulk_create(
        WebhookDelivery(endpoint=busy_endpoint, event="request.status_changed", payload={"reference": f"DSR-2026-{n:05d}"}, status="delivered")
        for n in range(2, 252)
    )
    return {"operator": operator, "failing": failing, "failed": failed}


def shown(response) -> list[WebhookDelivery]:
    return list(response.context["page"].object_list)


@pytest.mark.django_db
def test_every_delivery_is_in_the_log_a_page_at_a_time(client, log):
    """The log showed the latest 200 deliveries only: an older failed one could be neither seen nor redelivered."""
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    url = reverse("staff:webhooks")

    first = client.get(url)
    assert len(shown(first)) == 50 and "Page 1 of 6" in first.content.decode()
    assert 'href="?page=2"' in first.content.decode()
    last = client.get(url, {"page": 6})
    assert shown(last)[-1] == log["failed"]  # the oldest, last
    assert reverse("staff:webhook_redeliver", args=[log["failed"].public_id]) in last.content.decode()
    assert sum(len(shown(client.get(url, {"page": page}))) for page in range(1, 7)) == 251


@pytest.mark.django_db
def test_the_log_is_filtered_by_organisation_endpoint_and_state(client, log):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    url = reverse("staff:webhooks")
    failed, failing = log["failed"], log["failing"]

    for query in ({"status": "failed"}, {"endpoint": str(failing.public_id)}, {"organisation": str(log["operator"].public_id)}):
        assert shown(client.get(url, query)) == [failed], query
    both = client.get(url, {"organisation": str(log["operator"].public_id), "status": "delivered"})
    assert shown(both) == []
    # Deliveries there are, just none of these: the log does not say there are none yet.
    assert "No delivery matches these filters." in both.content.decode() and "No deliveries yet." not in both.content.decode()
    delivered = client.get(url, {"status": "delivered"})
    page = delivered.content.decode()
    assert len(shown(delivered)) == 50 and "Page 1 of 5" in page
    assert 'href="?status=delivered&amp;page=2"' in page  # the next page keeps the filter
    assert '<option value="delivered" selected>' in page
    assert f'<option value="{failing.public_id}">' in page

    # A value that is not valid matches nothing, and says so, rather than being dropped (which would show everything).
    for query in ({"endpoint": "not-an-id"}, {"status": "lost"}):
        response = client.get(url, query)
        assert shown(response) == [] and "A filter value is not valid" in response.content.decode(), query


@pytest.mark.django_db
def test_a_delivery_redelivered_from_the_filtered_log_leads_back_to_it(client, log):
    login_staff(client, staff_in_role("DPO", username="dpo1"))
    url = reverse("staff:webhooks")
    failed = log["failed"]

    page = client.get(url, {"status": "failed"}).content.decode()
    assert 'name="query" value="status=failed"' in page
    answer = client.post(reverse("staff:webhook_redeliver", args=[failed.public_id]), {"query": "status=failed"})

    assert answer.status_code == 302 and answer["Location"] == f"{url}?status=failed"
    assert WebhookDelivery.objects.filter(event_id=failed.event_id).count() == 2
    assert client.post(reverse("staff:webhook_redeliver", args=[failed.public_id]))["Location"] == url


@pytest.mark.django_db
def test_the_auditor_reads_the_log_and_its_filters_without_redelivering_and_a_handler_not_at_all(client, log):
    login_staff(client, staff_in_role("Auditor", username="auditor1"))
    url = reverse("staff:webhooks")
    response = client.get(url, {"status": "failed"})
    assert response.status_code == 200 and shown(response) == [log["failed"]]
    assert reverse("staff:webhook_redeliver", args=[log["failed"].public_id]) not in response.content.decode()
    assert client.post(reverse("staff:webhook_redeliver", args=[log["failed"].public_id])).status_code == 403

    client.logout()
    login_staff(client, staff_in_role("Handler", username="handler1"))
    assert client.get(url, {"status": "failed"}).status_code == 403


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({}, "webhook_log_idx"),
        ({"endpoint": "failing"}, "webhook_log_endpoint_idx"),
        ({"organisation": "operator"}, "webhook_log_endpoint_idx"),  # of one endpoint
        ({"status": "failed"}, "webhook_log_failed_idx"),
    ],
)
def test_a_page_of_the_log_is_read_in_order_from_an_index_not_sorted_from_every_delivery(log, filters, index):
    """At 200,000 deliveries a page took about 200 ms, every delivery sorted (migration 0071). With sequential scans
    and sorts priced out (these few rows would need neither), the planner reads each page in order from the index
    meant for it, if, and only if, that index fits the page's SQL: joined by the endpoint's public id rather than
    filtered by its id, a filtered page was read from the whole log's index instead."""
    values = {"endpoint": log["failing"].public_id, "organisation": log["operator"].public_id, "status": "failed"}
    deliveries = selectors.webhook_deliveries(**{name: values[name] for name in filters})
    sql, params = deliveries[:50].query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"Index Scan Backward using {index} " in plan and "Sort" not in plan, plan
