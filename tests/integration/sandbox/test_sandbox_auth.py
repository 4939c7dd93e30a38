"""The sandbox's token endpoint and token checks, over real HTTPS with msal (docs/reference/api-contracts.md, "Tokens
against the sandbox")."""

from __future__ import annotations

import msal

COMPANY_ID = "c0c05000-0000-4000-8000-000000000001"
TENANT = "sandbox-tenant"


def _app(sandbox, client_id: str, secret: str) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=secret,
        authority=f"{sandbox.base_url}/login/{TENANT}",
        validate_authority=False,
        instance_discovery=False,
        http_client=sandbox.session(),
    )


def test_openid_configuration_points_msal_at_the_token_endpoint(sandbox):
    with sandbox.session() as session:
        doc = session.get(f"{sandbox.base_url}/login/{TENANT}/v2.0/.well-known/openid-configuration").json()
    assert doc["token_endpoint"] == f"{sandbox.base_url}/login/{TENANT}/oauth2/v2.0/token"
    assert doc["authorization_endpoint"].startswith(f"{sandbox.base_url}/login/{TENANT}/")
    assert doc["issuer"] == f"{sandbox.base_url}/login/{TENANT}/v2.0"


def test_msal_client_credentials_token_is_accepted_by_business_central(sandbox, bc_root, acquire_token):
    result = _app(sandbox, "integration-app", "integration-secret").acquire_token_for_client(
        scopes=[f"{sandbox.base_url}/businesscentral/.default"]
    )
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 3000
    with sandbox.session() as session:
        response = session.get(bc_root + "companies", headers={"Authorization": f"Bearer {result['access_token']}"})
    assert response.status_code == 200
    assert response.json()["value"][0]["id"] == COMPANY_ID
    assert response.json()["value"][0]["name"] == "CRONUS UK Ltd."


def test_the_real_business_central_scope_is_accepted_too(sandbox):
    with sandbox.session() as session:
        response = session.post(
            f"{sandbox.base_url}/login/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "integration-app",
                "client_secret": "integration-secret",
                "scope": "https://api.businesscentral.dynamics.com/.default",
            },
        )
    assert response.status_code == 200
    assert set(response.json()) == {"token_type", "expires_in", "ext_expires_in", "access_token"}


def test_wrong_secret_is_refused_with_aadsts7000215(sandbox):
    result = _app(sandbox, "integration-app", "not-the-secret").acquire_token_for_client(
        scopes=[f"{sandbox.base_url}/businesscentral/.default"]
    )
    assert "access_token" not in result
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    with sandbox.session() as session:
        raw = session.post(
            f"{sandbox.base_url}/login/{TENANT}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "integration-app",
                "client_secret": "wrong",
                "scope": f"{sandbox.base_url}/dataverse/.default",
            },
        )
    assert raw.status_code == 401
    assert raw.json()["error"] == "invalid_client"


def test_unknown_client_and_unknown_resource_are_refused(sandbox):
    unknown = _app(sandbox, "nobody", "x").acquire_token_for_client(scopes=[f"{sandbox.base_url}/dataverse/.default"])
    assert unknown["error"] == "unauthorized_client"
    resource = _app(sandbox, "integration-app", "integration-secret").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert resource["error"] == "invalid_resource"


def test_token_for_one_api_is_refused_by_the_other(sandbox, bc_root, acquire_token):
    bc_token = acquire_token("integration", "businesscentral")
    dv_token = acquire_token("integration", "dataverse")
    with sandbox.session() as session:
        on_bc = session.get(bc_root + "companies", headers={"Authorization": f"Bearer {dv_token}"})
        on_dv = session.get(
            f"{sandbox.base_url}/dataverse/api/data/v9.2/accounts", headers={"Authorization": f"Bearer {bc_token}"}
        )
    assert on_bc.status_code == 401
    assert on_bc.json()["error"]["code"] == "Authentication_InvalidCredentials"
    assert "audience" in on_bc.json()["error"]["message"]
    assert on_bc.headers["WWW-Authenticate"].startswith("Bearer ")
    assert on_dv.status_code == 401
    assert "audience" in on_dv.json()["error"]["message"]


def test_missing_and_tampered_tokens_are_refused(sandbox, bc_root, acquire_token):
    token = acquire_token("integration", "businesscentral")
    header, payload, signature = token.split(".")
    tampered = f"{header}.{payload}.{signature[:-4]}AAAA"
    with sandbox.session() as session:
        missing = session.get(bc_root + "companies")
        forged = session.get(bc_root + "companies", headers={"Authorization": f"Bearer {tampered}"})
        dv_missing = session.get(f"{sandbox.base_url}/dataverse/api/data/v9.2/WhoAmI")
    assert missing.status_code == 401
    assert forged.status_code == 401
    assert dv_missing.status_code == 401
    assert "error" in dv_missing.json()


def test_who_am_i_identifies_the_calling_systemuser(sandbox, dv_api):
    integration = dv_api("integration").get("WhoAmI").json()
    crm_user = dv_api("crm").get("WhoAmI").json()
    assert integration["UserId"] != crm_user["UserId"]
    user = dv_api("integration").get(f"systemusers({crm_user['UserId']})").json()
    assert user["fullname"] == "Jim Olive"
    assert user["internalemailaddress"] == "JO@contoso.com"
    me = dv_api("integration").get(f"systemusers({integration['UserId']})").json()
    assert me["fullname"] == "# Business Central Integration"
    assert me["applicationid"] == "integration-app"


def test_a_business_central_user_is_not_a_dataverse_user(dv_api):
    response = dv_api("erp").get("WhoAmI")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "0x80072560"
