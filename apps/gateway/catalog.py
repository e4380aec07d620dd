"""The gateway's view of the catalog: every model and which grant may use which, read from
the database at most every ``GATEWAY_CATALOG_SECONDS`` per process and dropped at once in
this process when an operator saves a model, a backend or a grant's model list (other
processes follow within those seconds). Requests therefore cost no catalog query.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models.signals import m2m_changed, post_delete, post_save

from apps.catalog.models import Backend, CatalogModel, Kind, Tag
from apps.gateway.tokens import image_sizes
from apps.grants.models import Grant


@dataclass(frozen=True)
class ServedModel:
    id: int
    name: str
    upstream_model: str
    kind: str
    prompt_price: Decimal
    completion_price: Decimal
    context_window: int
    max_concurrency: int
    queue_size: int
    tags: tuple[str, ...]
    # (tokens of a low-detail image, of any other) by the model's rule; None: takes no images
    image_tokens: tuple[int, int] | None
    template_tokens: int  # what its chat template adds to a chat prompt (tokens.for_model)
    tokenize: str  # how its backend counts a rendered chat prompt ("" when it can not)
    active: bool  # the operator's switch
    healthy: bool  # the backend answered its last health probe (apps.catalog.probes)
    backend: str  # its name in the catalog
    base_url: str
    backend_secret: str
    last_check: datetime | None
    native_responses: bool = False  # the backend serves POST /responses itself

    @property
    def available(self) -> bool:
        return self.active and self.healthy

    @property
    def non_commercial(self) -> bool:
        return Tag.NON_COMMERCIAL in self.tags


@dataclass(frozen=True)
class CatalogSnapshot:
    models: dict[str, ServedModel]
    allowed: dict[int, frozenset[int]]  # grant id → ids of models it may use
    loaded_at: float

    def allowed_for(self, grant_id: int) -> frozenset[int]:
        return self.allowed.get(grant_id, frozenset())


_snapshot: CatalogSnapshot | None = None


def _served(model: CatalogModel) -> ServedModel:
    return ServedModel(
        id=model.id,
        name=model.name,
        upstream_model=model.upstream_model,
        kind=model.kind,
        prompt_price=model.prompt_price,
        completion_price=model.completion_price,
        context_window=model.context_window,
        max_concurrency=model.max_concurrency,
        queue_size=model.queue_size,
        tags=tuple(model.tags),
        image_tokens=image_sizes(model.image_tokens) if model.takes_images else None,
        template_tokens=model.template_tokens,
        tokenize=model.backend.tokenize,
        active=model.active,
        healthy=model.healthy,
        backend=model.backend.name,
        base_url=model.backend.base_url.rstrip("/"),
        backend_secret=model.backend.secret(),
        last_check=model.last_checked_at,
        native_responses=model.backend.responses == Backend.Responses.NATIVE,
    )


def load_snapshot() -> CatalogSnapshot:
    models = {m.name: _served(m) for m in CatalogModel.objects.select_related("backend")}
    allowed: dict[int, set[int]] = {}
    through = Grant.allowed_models.through.objects.values_list("grant_id", "catalogmodel_id")
    for grant_id, model_id in through:
        allowed.setdefault(grant_id, set()).add(model_id)
    frozen = {grant_id: frozenset(ids) for grant_id, ids in allowed.items()}
    return CatalogSnapshot(models=models, allowed=frozen, loaded_at=time.monotonic())


async def current_catalog() -> CatalogSnapshot:
    global _snapshot
    snapshot = _snapshot
    max_age = settings.GATEWAY_CATALOG_SECONDS
    if snapshot is None or time.monotonic() - snapshot.loaded_at > max_age:
        snapshot = _snapshot = await sync_to_async(load_snapshot, thread_sensitive=False)()
    return snapshot


def cached_catalog() -> CatalogSnapshot | None:
    """The snapshot this process holds, however old; None before the first request."""
    return _snapshot


def forget_catalog(**kwargs) -> None:
    global _snapshot
    _snapshot = None


for sender in (CatalogModel, Backend, Grant):
    post_save.connect(forget_catalog, sender=sender, dispatch_uid=f"gateway-{sender.__name__}-s")
    post_delete.connect(forget_catalog, sender=sender, dispatch_uid=f"gateway-{sender.__name__}-d")
m2m_changed.connect(forget_catalog, sender=Grant.allowed_models.through, dispatch_uid="gateway-m2m")

# How a refusal names a model's kind.
KIND_NAMES = {
    Kind.CHAT: "a chat",
    Kind.EMBEDDING: "an embedding",
    Kind.VLM: "a vision-language",
}
ENDPOINT_KINDS = {
    "chat": {Kind.CHAT, Kind.VLM},
    "completions": {Kind.CHAT},
    "responses": {Kind.CHAT, Kind.VLM},
    "embeddings": {Kind.EMBEDDING},
}
