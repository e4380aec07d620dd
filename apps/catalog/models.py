from __future__ import annotations

import ipaddress
import os
import re
import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

PRICE_DIGITS = {"max_digits": 18, "decimal_places": 6}
HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*\.?$")


def _is_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(HOSTNAME_RE.match(host))
    return True


def validate_backend_url(value: str) -> None:
    """An http(s) base URL. Unlike Django's URLValidator this accepts single-label host names
    (``http://gpu-node-1:8000/v1``, a docker compose service name), which backends usually have."""
    message = "Enter an http:// or https:// URL such as http://gpu-node-1:8000/v1."
    if not isinstance(value, str) or any(ch.isspace() for ch in value):
        raise ValidationError(message)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        raise ValidationError(message) from None
    ok = parts.scheme in ("http", "https") and not parts.query and not parts.fragment
    if not ok or parts.username or parts.password or not _is_host(parts.hostname or ""):
        raise ValidationError(message)


class Tokenize(models.TextChoices):
    """How a backend counts a chat prompt as its engine renders it (its chat template
    included), for streams that end without usage: ``POST /tokenize`` as vLLM takes it, or
    llama.cpp's server's ``POST /apply-template`` then ``POST /tokenize``."""

    NONE = "", "none"
    VLLM = "vllm", "vLLM"
    LLAMA_CPP = "llama.cpp", "llama.cpp server"


class Backend(models.Model):
    """An OpenAI-compatible inference server: vLLM, Ollama, llama.cpp server, TGI, …"""

    name = models.SlugField(max_length=100, unique=True)
    base_url = models.CharField(
        max_length=500,
        validators=[validate_backend_url],
        help_text="e.g. http://gpu-node-1:8000/v1",
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        help_text="Name of the environment variable holding this backend's secret, if any.",
    )
    tokenize = models.CharField(
        max_length=16,
        choices=Tokenize.choices,
        blank=True,
        default=Tokenize.NONE,
        help_text="How the backend counts a rendered chat prompt (for streams without usage).",
    )

    class Responses(models.TextChoices):
        TRANSLATED = "translated", "Translated to chat completions by Anvil"
        NATIVE = "native", "Served by the backend itself"

    # How POST /v1/responses reaches this backend (apps.gateway.responses).
    responses = models.CharField(
        max_length=16,
        choices=Responses.choices,
        default=Responses.TRANSLATED,
        help_text="native: the backend serves the Responses API itself (vLLM, Ollama); "
        "translated: Anvil turns Responses requests into chat completions.",
    )

    def secret(self) -> str:
        """The backend's secret, read from the environment so it never sits in the database."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def __str__(self) -> str:
        return self.name


class Kind(models.TextChoices):
    CHAT = "chat", "Chat"
    EMBEDDING = "embedding", "Embedding"
    VLM = "vlm", "Vision-language"


class Tag(models.TextChoices):
    FC = "FC", "Function calling"
    EMB = "EMB", "Embedding"
    VLM = "VLM", "Vision-language"
    NON_COMMERCIAL = "non-commercial", "Non-commercial"


def validate_tags(value) -> None:
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise ValidationError("Tags must be a list of strings.")
    unknown = sorted(set(value) - set(Tag.values))
    if unknown:
        raise ValidationError(
            f"Unknown tag(s) {', '.join(unknown)}; known tags are {', '.join(Tag.values)}."
        )


IMAGE_TILE_FIELDS = {
    # field: (default, minimum) — OpenAI's rule: an image fits in 2048 x 2048, then its
    # shortest side in 768 px; 512-px tiles of 170 tokens each, plus 85 (detail "low": 85 only)
    "tile_size": (512, 1),
    "tokens_per_tile": (170, 0),
    "base_tokens": (85, 0),
    "max_long_side": (2048, 1),
    "max_short_side": (768, 1),
}


def _whole(value, minimum: int) -> bool:
    return type(value) is int and minimum <= value <= 2**31 - 1


def validate_image_tokens(value) -> None:
    """What an image costs on a vision model: a whole number of tokens per image, or the
    tiles rule as a mapping of IMAGE_TILE_FIELDS (each optional, OpenAI's when missing)."""
    if value is None or _whole(value, 1):
        return
    if not isinstance(value, dict) or not value:
        raise ValidationError(
            "Give a whole number of tokens per image, or a mapping of "
            f"{', '.join(IMAGE_TILE_FIELDS)}."
        )
    unknown = sorted(str(key) for key in value if key not in IMAGE_TILE_FIELDS)
    if unknown:
        raise ValidationError(
            f"Unknown image_tokens field(s) {', '.join(unknown)}; known fields are "
            f"{', '.join(IMAGE_TILE_FIELDS)}."
        )
    for key, number in value.items():
        minimum = IMAGE_TILE_FIELDS[key][1]
        if not _whole(number, minimum):
            raise ValidationError(f"image_tokens.{key} must be a whole number >= {minimum}.")
    if value.get("max_short_side", 768) > value.get("max_long_side", 2048):
        raise ValidationError("image_tokens.max_short_side must not exceed max_long_side.")


class CatalogModel(models.Model):
    """A model clients name in their requests, with its price and its limits."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200, unique=True, help_text='What clients send as "model".')
    backend = models.ForeignKey(Backend, models.PROTECT, related_name="models")
    upstream_model = models.CharField(max_length=200, help_text="The model's name on its backend.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHAT)
    prompt_price = models.DecimalField(
        **PRICE_DIGITS, validators=[MinValueValidator(0)], help_text="Credits per 1M prompt tokens."
    )
    completion_price = models.DecimalField(
        **PRICE_DIGITS,
        validators=[MinValueValidator(0)],
        help_text="Credits per 1M completion tokens.",
    )
    context_window = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    max_concurrency = models.PositiveIntegerField(default=4, validators=[MinValueValidator(1)])
    queue_size = models.PositiveIntegerField(default=16)
    tags = models.JSONField(default=list, blank=True, validators=[validate_tags])
    # What Anvil counts for an image part (vision models only; apps.gateway.tokens sizes it):
    # None is OpenAI's tiles rule, an int a fixed count, a dict the tiles rule's fields.
    image_tokens = models.JSONField(
        null=True,
        blank=True,
        validators=[validate_image_tokens],
        help_text="Vision models: tokens per image (a number), or the tiles rule "
        "{tile_size, tokens_per_tile, base_tokens, max_long_side, max_short_side}; "
        "empty: OpenAI's tiles (85 + 170 per 512-px tile).",
    )
    template_tokens = models.PositiveIntegerField(
        default=0,
        help_text="Tokens the model's chat template adds to a chat prompt beyond 4 per message "
        "(a default system prompt, the assistant's header), counted in every estimate.",
    )
    # The operator's switch. Health is separate: the probes never touch ``active``.
    active = models.BooleanField(default=True)
    # Set by the backend health probes (apps.catalog.probes): whether the backend answered the
    # last probe. A model is served only when it is both active and healthy.
    healthy = models.BooleanField(default=True, editable=False)
    # Set by the backend health probes; None until the first probe ran.
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(prompt_price__gte=0) & models.Q(completion_price__gte=0),
                name="catalog_catalogmodel_prices_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(context_window__gte=1) & models.Q(max_concurrency__gte=1),
                name="catalog_catalogmodel_positive_limits",
            ),
        ]

    @property
    def available(self) -> bool:
        """Shown as Active and served: switched on by operators and passing health checks."""
        return self.active and self.healthy

    @property
    def takes_images(self) -> bool:
        """A vision-language model (its kind or its tag): chat messages may carry images."""
        return self.kind == Kind.VLM or Tag.VLM in self.tags

    def clean(self) -> None:
        if self.image_tokens is not None and not self.takes_images:
            raise ValidationError(
                {"image_tokens": "Only a vision-language model (kind vlm or tag VLM) takes images."}
            )

    @property
    def is_non_commercial(self) -> bool:
        return Tag.NON_COMMERCIAL in self.tags

    def __str__(self) -> str:
        return self.name
