"""Writes of people: who signs in through the identity provider, and what it says of them."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.claims import Profile, SignInRefused
from apps.accounts.models import ProviderIdentity, User
from apps.teams.services import memberships_sync


def person_sign_in(*, profile: Profile) -> User:
    """The person the provider vouched for, their username, name and e-mail address (and,
    when the provider decides them, affiliation and teams) brought up to date. They are found
    by the provider's issuer and subject; an existing account with the same e-mail address is
    taken only with OIDC_LINK_BY_EMAIL and an e-mail address the provider verified, and never a
    staff account (an address at the provider is not proof enough for the admin); otherwise a
    new account is made. ``SignInRefused`` for a deactivated account."""
    try:
        with transaction.atomic():
            return _sign_in(profile)
    except IntegrityError:
        # The same person's first sign-in in two tabs at once: the other one made the account.
        with transaction.atomic():
            return _sign_in(profile)


def _sign_in(profile: Profile) -> User:
    identity = (
        ProviderIdentity.objects.select_for_update()
        .select_related("user")
        .filter(issuer=profile.issuer, subject=profile.subject)
        .first()
    )
    if identity is None:
        user = _linked_by_email(profile) or _new_user(profile)
        identity = ProviderIdentity.objects.create(
            user=user, issuer=profile.issuer, subject=profile.subject
        )
    user = identity.user
    if not user.is_active:
        raise SignInRefused("Your Anvil account is deactivated. Ask the service's staff.")
    ProviderIdentity.objects.filter(pk=identity.pk).update(last_sign_in=timezone.now())
    _update_user(user, profile)
    if profile.teams is not None:
        memberships_sync(user=user, roles=profile.teams)
    return user


def _linked_by_email(profile: Profile) -> User | None:
    if not (settings.OIDC_LINK_BY_EMAIL and profile.email and profile.email_verified):
        return None
    users = list(User.objects.filter(email__iexact=profile.email)[:2])
    if len(users) > 1:
        raise SignInRefused(
            "More than one Anvil account has your e-mail address, so it is not clear which is "
            "yours. Ask the service's staff."
        )
    if not users:
        return None
    if users[0].is_staff:
        raise SignInRefused(
            "Your e-mail address belongs to a staff account, which is never taken over by "
            "e-mail. Ask the service's staff to link it."
        )
    if users[0].provider_identities.filter(issuer=profile.issuer).exists():
        raise SignInRefused(
            "Your e-mail address belongs to an Anvil account that signs in as someone else at "
            "your identity provider. Ask the service's staff."
        )
    return users[0]


def _new_user(profile: Profile) -> User:
    user = User(username=_free_username(profile, user=None), email=profile.email)
    user.set_unusable_password()
    if profile.affiliation is not None:
        user.affiliation = profile.affiliation
    try:
        user.full_clean(exclude=["password"])
    except ValidationError as exc:
        raise SignInRefused(
            "Anvil can not make an account from what your identity provider sent: "
            + " ".join(exc.messages)
        ) from None
    user.save(force_insert=True)
    return user


def _update_user(user: User, profile: Profile) -> None:
    """Save only what changed, so a sign-in that changes nothing writes nothing (and keys'
    cache entries, which carry the owner row, stay)."""
    wanted = {
        "username": _free_username(profile, user=user),
        "email": profile.email,
        "first_name": profile.first_name,
        "last_name": profile.last_name,
    }
    if profile.affiliation is not None:
        wanted["affiliation"] = profile.affiliation
    changed = [name for name, value in wanted.items() if getattr(user, name) != value]
    for name in changed:
        setattr(user, name, wanted[name])
    if changed:
        user.save(update_fields=changed)


def _free_username(profile: Profile, *, user: User | None) -> str:
    """The username the provider gives, unless another account has it: then that name with a
    suffix made from the provider's subject, the same at each sign-in."""
    taken = User.objects.filter(username__iexact=profile.username)
    if user is not None:
        taken = taken.exclude(pk=user.pk)
    if not taken.exists():
        return profile.username
    suffix = hashlib.sha256(f"{profile.issuer} {profile.subject}".encode()).hexdigest()[:8]
    return f"{profile.username[:141]}-{suffix}"
