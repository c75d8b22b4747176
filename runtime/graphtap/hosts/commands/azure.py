"""What the commands that talk to Azure share: the deployment, the credential, the cloud."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import click

from graphtap.deployment import Deployment, DeploymentError


def environment_option(function: Any) -> Any:
    return click.option(
        "--env",
        "environment",
        default=lambda: os.environ.get("ENV", "dev"),
        show_default="dev or $ENV",
        help="Environment whose stack outputs (.outputs/ENV.json) to use.",
    )(function)


def cloud_options(function: Any) -> Any:
    function = click.option(
        "--graph-endpoint",
        envvar="GRAPHTAP_GRAPH_ENDPOINT",
        help="Graph endpoint [default: the deployment's, e.g. https://dod-graph.microsoft.us].",
    )(function)
    return click.option(
        "--authority",
        envvar="AZURE_AUTHORITY_HOST",
        help="Entra authority host [default: the deployment's cloud's].",
    )(function)


def load_deployment(environment: str, graph_endpoint: str | None) -> Deployment:
    try:
        deployment = Deployment.load(environment)
    except DeploymentError as exc:
        raise click.ClickException(str(exc)) from None
    if graph_endpoint:
        deployment = dataclasses.replace(deployment, graph_endpoint=graph_endpoint)
    return deployment


def credential(authority: str | None, deployment: Deployment) -> Any:
    """DefaultAzureCredential: managed identity in Azure, the developer's login locally; it
    signs in with the deployment's cloud's Entra ID unless `authority` names another."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential(authority=authority or deployment.profile.authority_host)
