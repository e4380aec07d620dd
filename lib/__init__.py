"""Infrastructure that is not about grants, keys or credits: wire protocols, the HTTP client
to the backends, ASGI plumbing, asyncio patterns.

Nothing here imports Django or ``apps`` (``lib/tests/test_django_free.py`` checks it), so each
module can be read, tested and replaced on its own; ``apps`` imports from here, never the
other way. README.md's "Infrastructure: what is ours and why" says why each is ours and not a
library, with the figures (``bench/``).
"""
