"""The provider's teams claim decides a person's teams at each sign-in: a team named at one
sign-in is joined, and left at the next sign-in that no longer names it, with the person's
keys in its grants refused by the gateway from then on; the affiliation claim decides
Non-commercial models as an affiliation set by hand does. The provider is
oidc-provider-mock."""

from __future__ import annotations

import httpx
import pytest

from apps.accounts.models import User
from apps.audit.models import AuditAction, AuditEntry
from apps.catalog.models import Tag
from apps.keys.services import api_key_create
from apps.teams.models import Membership

pytestmark = pytest.mark.django_db


def teams(user) -> dict[str, str]:
    rows = Membership.objects.filter(user=user).select_related("team")
    return {row.team.name: row.role for row in rows}


def gateway_models(server, secret: str) -> httpx.Response:
    """The gateway's answer to the key (Anvil under uvicorn), as a client program gets it."""
    url = f"{server.url}/api/v1/models-plgrid-format"
    return httpx.get(url, headers={"Authorization": f"Bearer {secret}"}, trust_env=False)


@pytest.mark.django_db(transaction=True)
def test_it_adds_a_team_at_one_sign_in_and_removes_it_at_the_next(
    oidc, browser, client, world, anvil_server
):
    account = oidc.add_account("ada", anvil_teams=["a-team:manager", "plg-team-7:member"])
    browser.sign_in("ada")
    ada = User.objects.get(username="ada")
    assert teams(ada) == {"a-team": "manager", "plg-team-7": "member"}
    _, secret = api_key_create(grant=world.grant, owner=ada, name="ada-key")
    assert gateway_models(anvil_server, secret).status_code == 200

    client.logout()
    account.claims["anvil_teams"] = ["plg-team-7:manager"]
    browser.sign_in("ada")
    assert teams(ada) == {"plg-team-7": "manager"}
    refused = gateway_models(anvil_server, secret)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    removed = AuditEntry.objects.get(action=AuditAction.MEMBER_REMOVED)
    assert (removed.grant, removed.target) == (world.grant, "ada in team a-team")
    assert AuditEntry.objects.filter(action=AuditAction.KEY_REVOKED, grant=world.grant).exists()


def test_it_removes_every_team_when_the_claim_is_gone(oidc, browser, client, world):
    account = oidc.add_account("ada", anvil_teams="a-team")  # one string, a member
    browser.sign_in("ada")
    assert teams(User.objects.get(username="ada")) == {"a-team": "member"}
    client.logout()
    del account.claims["anvil_teams"]  # providers leave an empty claim out
    browser.sign_in("ada")
    assert teams(User.objects.get(username="ada")) == {}


def test_it_leaves_teams_alone_without_a_teams_claim_setting(settings, oidc, browser, world):
    settings.OIDC_TEAMS_CLAIM = ""
    oidc.add_account("bobby", email="bob@example.org", anvil_teams=[])
    settings.OIDC_LINK_BY_EMAIL = True
    browser.sign_in("bobby")
    assert teams(world.bob) == {"a-team": "member"}


@pytest.mark.django_db(transaction=True)
def test_it_decides_non_commercial_models_by_the_affiliation_claim(
    oidc, browser, client, world, anvil_server
):
    world.chat_model.tags = ["FC", Tag.NON_COMMERCIAL]
    world.chat_model.save()
    account = oidc.add_account("ada", affiliation="staff", anvil_teams=["a-team"])
    browser.sign_in("ada")
    _, secret = api_key_create(grant=world.grant, owner=User.objects.get(username="ada"), name="k")

    def chat_tags():
        models = {m["name"]: m for m in gateway_models(anvil_server, secret).json()["data"]}
        return models["chat-small"]["tags"]

    assert "Accessible" in chat_tags()
    client.logout()
    account.claims["affiliation"] = "company"
    browser.sign_in("ada")
    assert User.objects.get(username="ada").affiliation == "commercial"
    assert "Inaccessible" in chat_tags()
