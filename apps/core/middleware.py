"""Portal pages that can not be served for a moment answer 503 with the reason on the portal's
error page, never a 500:

- the operation raised ``ServiceUnavailable`` (a service it needs can not be reached, nothing
  was changed, e.g. the key cache on a revoke);
- the cache's Redis can not be reached where a page needs it: sign-in, whose rate limits
  (django-allauth's) are counted in the cache. Signing in then waits for Redis rather than
  going on without its rate limits.
"""

from __future__ import annotations

import logging

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.core.exceptions import ServiceUnavailable
from apps.core.views import service_unavailable

logger = logging.getLogger(__name__)

CACHE_DOWN = (
    "Anvil's cache can not be reached, and this page needs it (sign-in counts failed attempts "
    "there). Nothing was changed. Please try again in a moment."
)


class ServiceUnavailableMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ServiceUnavailable):
            return service_unavailable(request, exception.message)
        if isinstance(exception, RedisConnectionError | RedisTimeoutError):
            logger.error("cache unavailable at %s", request.path, exc_info=exception)
            return service_unavailable(request, CACHE_DOWN)
        return None
