"""Connectors to the source systems of the data inventory.

Every connector streams the rows a source holds for a set of identifiers:
`stream(category, identities)` yields (columns, rows) without holding the
rows in memory. `connector_for(source)` picks the connector by its kind.
"""

from requests_app.sources.base import SourceError, mask_value
from requests_app.sources.http import HTTPConnector
from requests_app.sources.manual import ManualConnector
from requests_app.sources.sql import SQLConnector

CONNECTORS = {"sql": SQLConnector, "http": HTTPConnector, "manual": ManualConnector}


def connector_for(source):
    return CONNECTORS[source.connector](source)


__all__ = ["SourceError", "connector_for", "mask_value"]
