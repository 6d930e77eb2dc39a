"""Deleting old rows a batch at a time, for the periodic purges."""

from django.db.models import QuerySet


def delete_in_batches(rows: QuerySet, *, order_by: tuple[str, ...], batch_size: int = 1000) -> int:
    """Delete `rows` a batch at a time, oldest first by `order_by`, each batch in its own short statement: the first
    run after years of rows neither holds a long transaction nor locks every old row at once. Returns how many rows
    were deleted, cascades included."""
    deleted = 0
    while True:
        batch = list(rows.order_by(*order_by).values_list("id", flat=True)[:batch_size])
        if not batch:
            return deleted
        deleted += rows.filter(id__in=batch).delete()[0]
        if len(batch) < batch_size:
            return deleted
