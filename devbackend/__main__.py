"""``python -m devbackend``: serve the development backend with uvicorn."""

from __future__ import annotations

import argparse
import os
import socket
import sys

import uvicorn

from devbackend.server import DEFAULT_MODELS, DevBackend, Options
from devbackend.text import DEFAULT_CONTEXT_TOKENS


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devbackend", description="Anvil's OpenAI-compatible development backend."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=_non_negative, default=0.0)
    parser.add_argument("--tokens-per-second", type=_non_negative, default=0.0, help="0: no limit")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="listed by /v1/models")
    parser.add_argument(
        "--context-tokens",
        type=_positive,
        default=DEFAULT_CONTEXT_TOKENS,
        help="the context window: prompt and reply together (replies: at most 1M tokens)",
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("DEVBACKEND_API_KEY") or None, help="require it"
    )
    return parser.parse_args(argv)


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    options = Options(
        models=tuple(name.strip() for name in args.models.split(",") if name.strip()),
        latency_ms=args.latency_ms,
        tokens_per_second=args.tokens_per_second,
        api_key=args.api_key,
        context_tokens=args.context_tokens,
    )
    sock = _listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    print(
        f"devbackend listening on {url} (models {','.join(options.models)}; "
        f"latency {options.latency_ms:g} ms; "
        f"{f'{options.tokens_per_second:g}' if options.tokens_per_second else 'unlimited'} "
        f"tokens/s; context {options.context_tokens} tokens; "
        f"api key {'required' if options.api_key else 'off'})",
        flush=True,
    )
    config = uvicorn.Config(
        DevBackend(options),
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=0.5,  # stalled streams must not hold up a stop
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
