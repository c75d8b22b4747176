"""Fakes of Azure and Graph services, used through the real SDKs at their transport boundary."""
