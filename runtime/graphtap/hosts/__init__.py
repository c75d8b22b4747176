"""Hosts: the CLI, the App Service web app and the Azure Functions entry."""
