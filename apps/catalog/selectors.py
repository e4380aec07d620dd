from __future__ import annotations

from dataclasses import dataclass

from apps.catalog.models import CatalogModel, Tag


@dataclass(frozen=True)
class ModelRow:
    model: CatalogModel
    accessible: bool

    @property
    def status_tag(self) -> str:
        return "Active" if self.model.available else "Inactive"

    @property
    def access_tag(self) -> str:
        return "Accessible" if self.accessible else "Inaccessible"

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
    rows = [ModelRow(model=m, accessible=m.id in accessible) for m in models]
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
