"""graphtap: a DLP feed out of Microsoft Graph change notifications delivered to Event Hubs."""

__version__ = "0.1.0"
