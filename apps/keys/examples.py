"""What the getting-started examples need: where the API is and a model to name in them."""

from __future__ import annotations

from apps.catalog.selectors import example_model_name

API_PATH = "/api/v1"
PLACEHOLDER_MODEL = "MODEL-NAME"


def examples_context(*, request, grants) -> dict:
    """The API's base URL as this request reached the portal, and a chat model one of
    ``grants`` lets the user call (a placeholder when there is none)."""
    model = example_model_name(grants=grants, user=request.user)
    return {
        "base_url": request.build_absolute_uri(API_PATH),
        "example_model": model or PLACEHOLDER_MODEL,
        "example_model_missing": model is None,
    }
