"""Who may read the web app's status page, /status.json and /metrics.

App Service Authentication signs callers in against this environment's status app registration;
its service principal requires an app role assignment, so Entra issues tokens (and browser
sign-ins) only to principals the environment names: the readers group gets `Status.Read`, the
metrics scraper gets `Metrics.Read`. Easy Auth does not check roles; the web app does
(`graphtap.hosts.access`). No client secret exists: browsers sign in with the ID token flow,
the scraper with its own identity's bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.cdk import (
    ApplicationAppRole,
    ApplicationIdentifierUri,
    ApplicationRedirectUris,
    ApplicationRegistration,
    AppRoleAssignment,
    Construct,
    ServicePrincipal,
)

STATUS_READ = "Status.Read"
METRICS_READ = "Metrics.Read"
# App role ids are fixed per role so that a redeploy keeps every assignment.
STATUS_READ_ROLE_ID = "1467e4b1-b36b-462d-b0ca-0266c913af55"
METRICS_READ_ROLE_ID = "34a6f3e5-dfbb-411b-a162-344811d5b113"
# Where App Service Authentication receives the sign-in response.
SIGN_IN_CALLBACK = "/.auth/login/aad/callback"


@dataclass(frozen=True)
class StatusAccessProps:
    display_name: str
    web_app_hostname: str  # the site's default host name, for the sign-in redirect
    readers_group_object_id: str | None
    metrics_scraper_object_id: str | None


class StatusAccess(Construct):
    def __init__(self, scope: Construct, id_: str, props: StatusAccessProps) -> None:
        super().__init__(scope, id_)
        self.application = ApplicationRegistration(
            self,
            "application",
            display_name=props.display_name,
            description="Sign-in for the graphtap status page, /status.json and /metrics",
            sign_in_audience="AzureADMyOrg",
            requested_access_token_version=2,  # `aud` is the client id for users and scrapers
            implicit_id_token_issuance_enabled=True,  # browser sign-in without a client secret
        )
        self.identifier_uri = ApplicationIdentifierUri(
            self,
            "identifier_uri",
            application_id=self.application.id,
            identifier_uri=f"api://{self.application.client_id}",
        )
        self.redirect_uris = ApplicationRedirectUris(
            self,
            "redirect_uris",
            application_id=self.application.id,
            type="Web",
            redirect_uris=[f"https://{props.web_app_hostname}{SIGN_IN_CALLBACK}"],
        )
        self.status_role = ApplicationAppRole(
            self,
            "status_read",
            application_id=self.application.id,
            role_id=STATUS_READ_ROLE_ID,
            value=STATUS_READ,
            display_name="Read graphtap status",
            description="Read the status page, /status.json and /metrics",
            allowed_member_types=["User", "Application"],
        )
        self.metrics_role = ApplicationAppRole(
            self,
            "metrics_read",
            application_id=self.application.id,
            role_id=METRICS_READ_ROLE_ID,
            value=METRICS_READ,
            display_name="Scrape graphtap metrics",
            description="Read /metrics only",
            allowed_member_types=["Application"],
        )
        self.service_principal = ServicePrincipal(
            self,
            "service_principal",
            client_id=self.application.client_id,
            app_role_assignment_required=True,  # tokens only for assigned principals
        )
        self.readers: AppRoleAssignment | None = None
        if props.readers_group_object_id is not None:
            self.readers = self._assign(
                "readers_group", self.status_role, props.readers_group_object_id
            )
        self.scraper: AppRoleAssignment | None = None
        if props.metrics_scraper_object_id is not None:
            self.scraper = self._assign(
                "metrics_scraper", self.metrics_role, props.metrics_scraper_object_id
            )

    @property
    def client_id(self) -> str:
        return self.application.client_id

    @property
    def audiences(self) -> list[str]:
        """The `aud` values a token for the status API carries (v2: the client id)."""
        return [self.application.client_id, f"api://{self.application.client_id}"]

    def _assign(self, id_: str, role: ApplicationAppRole, principal: str) -> AppRoleAssignment:
        return AppRoleAssignment(
            self,
            id_,
            app_role_id=role.role_id,
            principal_object_id=principal,
            resource_object_id=self.service_principal.object_id,
        )
