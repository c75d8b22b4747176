"""Azure Functions entry point (Python v2 programming model): the processor as a function.

Event Hubs trigger with cardinality many: the host leases partitions across instances,
hands each invocation a batch from one partition, and checkpoints when it returns. The
connection is identity-based (app settings `NotificationsHub__fullyQualifiedNamespace`,
`NotificationsHub__credential=managedidentity`, `NotificationsHub__clientId`); no
connection string exists. The retry policy is unlimited, so a findings-hub outage delays
the checkpoint instead of skipping the batch.
"""

from __future__ import annotations

import azure.functions as func

from graphtap.hosts.function import shared_handler

app = func.FunctionApp()


@app.event_hub_message_trigger(
    arg_name="events",
    event_hub_name="%GRAPHTAP_NOTIFICATIONS_HUB%",
    connection="NotificationsHub",
    cardinality=func.Cardinality.MANY,
    consumer_group="%GRAPHTAP_CONSUMER_GROUP%",
)
@app.retry(
    strategy="exponential_backoff",
    max_retry_count="-1",
    minimum_interval="00:00:05",
    maximum_interval="00:05:00",
)
async def process_notifications(events: list[func.EventHubEvent]) -> None:
    handler = await shared_handler()
    await handler.handle(events)
