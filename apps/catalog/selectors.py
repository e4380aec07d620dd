from __future__ import annotations

from dataclasses import dataclass

from apps.catalog.models import CatalogModel, Tag


@dataclass(frozen=True)
class ModelRow:
    model: CatalogModel
    in_grants: bool  # one of the user's grants allows the model
    commercial_user: bool = False

    @property
    def accessible(self) -> bool:
        """The gateway's rule (apps.gateway.admission.check_model): allowed by a grant, and
        not non-commercial for a person with a commercial affiliation."""
        return self.in_grants and not self.barred_as_commercial

    @property
    def barred_as_commercial(self) -> bool:
        return self.model.is_non_commercial and self.commercial_user

    @property
    def status_tag(self) -> str:
        return "Active" if self.model.available else "Inactive"

    @property
    def access_tag(self) -> str:
        return "Accessible" if self.accessible else "Inaccessible"

    @property
    def inactive_reason(self) -> str | None:
        if not self.model.active:
            return "Switched off by the operators."
        if not self.model.healthy:
            return "Its backend did not answer the last health check."
        return None

    @property
    def inaccessible_reason(self) -> str | None:
        if self.barred_as_commercial:
            return "Non-commercial: not for people with a commercial affiliation."
        if not self.in_grants:
            return "None of your grants includes it."
        return None

    @property
    def tags(self) -> list[str]:
        return [self.status_tag, self.access_tag, *self.model.tags]


def accessible_model_ids(*, user) -> set[int]:
    """Ids of catalog models that at least one grant of the user's teams may use."""
    if not user.is_authenticated:
        return set()
    return set(
        CatalogModel.objects.filter(grants__team__memberships__user=user).values_list(
            "id", flat=True
        )
    )


def catalog_for_user(*, user, tag: str | None = None) -> list[ModelRow]:
    """Every catalog model with the user's Accessible flag, optionally only those with ``tag``.

    ``tag`` may be a catalog tag (FC, EMB, …) or one of the computed ones (Active, Inactive,
    Accessible, Inaccessible). The catalog is small, so the tag filter runs in Python and works
    the same on SQLite and PostgreSQL.
    """
    accessible = accessible_model_ids(user=user)
    models = CatalogModel.objects.select_related("backend").order_by("name")
    commercial = user.is_authenticated and user.is_commercial
    rows = [ModelRow(m, m.id in accessible, commercial) for m in models]
    if tag:
        rows = [row for row in rows if tag in row.tags]
    return rows


def filter_tags() -> list[str]:
    return ["Active", "Inactive", "Accessible", "Inaccessible", *Tag.values]


def example_model_name(*, grants, user) -> str | None:
    """A chat model one of ``grants`` lets ``user`` call now (the first by name), for the
    getting-started examples; None when there is none."""
    models = CatalogModel.objects.filter(
        grants__in=grants, kind="chat", active=True, healthy=True
    ).order_by("name")
    for model in models:
        if not (model.is_non_commercial and user.is_commercial):
            return model.name
    return None


# What each tag of the Models page means, in its order on the page.
TAG_MEANINGS = {
    "Active": "Served now: switched on, and its backend answered the last health check.",
    "Inactive": "Not served now; the model's row says why.",
    "Accessible": "One of your grants lets you call it.",
    "Inaccessible": "You can not call it; the model's row says why.",
    "FC": "Function calling: accepts tools and answers with tool calls.",
    "EMB": "Embedding model: serves /embeddings, not chat.",
    "VLM": "Vision-language model: accepts images in chat messages.",
    "non-commercial": "For non-commercial use only: people with a commercial affiliation "
    "can not call it.",
}


def tag_legend() -> list[tuple[str, str]]:
    return list(TAG_MEANINGS.items())
