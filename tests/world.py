"""The one test world every test shares (after healthchecks' hc/test.py).

Alice manages team ``a-team`` and its grant ``alice-grant``; Bob is a plain member of that
team; Charlie belongs to no team. A catalog of two models on one backend: ``chat-small``
(allowed to Alice's grant) and ``embed-small`` (not allowed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from django.utils import timezone

from apps.accounts.models import User
from apps.catalog.models import Backend, CatalogModel, Kind
from apps.grants.models import Grant
from apps.teams.models import Membership, Role, Team
from tests.waiting import eventually

PASSWORD = "correct-horse-battery-staple"


@dataclass
class World:
    alice: User
    bob: User
    charlie: User
    team: Team
    grant: Grant
    backend: Backend
    chat_model: CatalogModel
    embed_model: CatalogModel


def make_user(username: str, **fields) -> User:
    return User.objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, **fields
    )


def make_world() -> World:
    alice, bob, charlie = make_user("alice"), make_user("bob"), make_user("charlie")
    team = Team.objects.create(name="a-team")
    Membership.objects.create(team=team, user=alice, role=Role.MANAGER)
    Membership.objects.create(team=team, user=bob, role=Role.MEMBER)
    backend = Backend.objects.create(name="local", base_url="http://127.0.0.1:8001/v1")
    chat = CatalogModel.objects.create(
        name="chat-small",
        backend=backend,
        upstream_model="org/chat-small",
        kind=Kind.CHAT,
        prompt_price=Decimal("0.5"),
        completion_price=Decimal("1.5"),
        context_window=8192,
        tags=["FC"],
    )
    embed = CatalogModel.objects.create(
        name="embed-small",
        backend=backend,
        upstream_model="org/embed-small",
        kind=Kind.EMBEDDING,
        prompt_price=Decimal("0.1"),
        completion_price=Decimal("0.1"),
        context_window=512,
        tags=["EMB"],
    )
    today = timezone.localdate()
    grant = Grant.objects.create(
        team=team,
        identifier="alice-grant",
        credits_allocated=Decimal("1000"),
        valid_from=today - dt.timedelta(days=30),
        valid_until=today + dt.timedelta(days=335),
    )
    grant.allowed_models.add(chat)
    return World(alice, bob, charlie, team, grant, backend, chat, embed)


def wait_for_settlements(timeout: float = 5.0) -> None:
    """Wait until no credit hold is open. A request's settlement is written while its answer
    goes out (``apps.usage.ledger.asettle``), so a test that reads the ledger or the counters
    after an answer waits for this first, as a client reading its usage a moment later
    would. A busy key's ready hold (``apps.usage.ready``) is open until a request takes it or
    it is withdrawn, GATEWAY_READY_HOLD_SECONDS after it was placed."""
    from apps.usage.models import Hold

    eventually(lambda: not Hold.objects.exists(), timeout=timeout, what="every credit hold settled")


def sign_in_staff(client, user: User) -> None:
    """``client.force_login`` for the admin, which opens for staff only after a second factor
    (apps.accounts.middleware): the person gets TOTP set up, and this session a record of
    having used it, as allauth keeps one."""
    import time

    from allauth.account.internal.flows import login
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    if not Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists():
        TOTP.activate(user, generate_totp_secret())
    client.force_login(user)
    session = client.session
    session[login.AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "mfa", "type": "totp", "at": time.time()}
    ]
    session[login._AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()
