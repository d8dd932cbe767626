"""`make server`: `langgraph dev` on a checked port (langgraph dev itself moves off a busy one silently)."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEFAULT_PORT", "PORT_VARIABLE", "busy_message", "main", "port_is_free"]

DEFAULT_PORT = 2024
PORT_VARIABLE = "CONVOMEM_SERVER_PORT"
HOST = "127.0.0.1"


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen there now: bound the way uvicorn binds (SO_REUSEADDR, so a port
    that only has connections in TIME_WAIT from a stopped server counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def busy_message(port: int) -> str:
    other = 2100 if port != 2100 else 2101
    return f"port {port} is busy: stop what uses it or run `make server PORT={other}`"


def _port(value: str | None) -> int:
    if not value:
        return DEFAULT_PORT
    if not value.isdigit() or not 0 < (port := int(value)) < 65536:
        raise ValueError(f"port {value!r} is not a port number: use 1-65535")
    return port


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m graphs.serve",
        description=f"langgraph dev on --port, ${PORT_VARIABLE} or {DEFAULT_PORT}; refuses a busy port.",
    )
    parser.add_argument("--port", default=None, help=f"default: ${PORT_VARIABLE} or {DEFAULT_PORT}")
    args, rest = parser.parse_known_args(argv)
    try:
        port = _port(args.port or os.environ.get(PORT_VARIABLE))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not port_is_free(port):
        print(f"error: {busy_message(port)}", file=sys.stderr)
        return 1
    beside = Path(sys.executable).with_name("langgraph")
    langgraph = str(beside) if beside.exists() else shutil.which("langgraph")
    if langgraph is None:
        print(
            "error: langgraph-cli is not installed: run `make server` (it installs the dev extra)",
            file=sys.stderr,
        )
        return 1
    command = [langgraph, "dev", "--no-browser", "--host", HOST, "--port", str(port), *rest]
    sys.stdout.flush()
    os.execv(langgraph, command)  # the server takes over this process: Ctrl-C and signals reach it


if __name__ == "__main__":
    sys.exit(main())
