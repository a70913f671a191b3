"""The stage command's side of the warm stage host (see `stage_host`): hand the command over.

In: this stage command's arguments, directory, environment, import path and standard streams, and
`MAINSTEM_STAGE_HOST` naming the host's socket. Out: the exit status of the child the host ran the
stage in (or the same signal, raised here), or None when no host takes it. Kept to the standard
library, as it runs in every stage command before anything else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

HOST_ENV = "MAINSTEM_STAGE_HOST"
WARM_ENV = "MAINSTEM_WARM_STAGES"
HEADER = 8  # bytes of the request's length, before its JSON


def hosted_status(argv: list[str]) -> int | None:
    """Run this stage command in the host named by `MAINSTEM_STAGE_HOST`; its exit status, or
    None when there is no host to take it (the caller runs the stage itself)."""
    address = os.environ.get(HOST_ENV)
    if not address:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(address)
        request = {
            "argv": argv,
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "path": sys.path,
            "executable": sys.executable,
        }
        payload = json.dumps(request).encode()
        socket.send_fds(connection, [len(payload).to_bytes(HEADER, "big") + payload], [0, 1, 2])
    except OSError:
        connection.close()
        return None
    with connection, connection.makefile("rb") as replies:
        line = replies.readline()
    if not line:
        stage = argv[1] if len(argv) > 1 else "stage"
        print(
            f"{stage}: error: the warm stage host stopped before the stage ended; run the batch "
            f"again, or set {WARM_ENV}=0 to run each stage in its own interpreter",
            file=sys.stderr,
        )
        return 1
    answer = json.loads(line)
    if answer.get("declined"):
        return None
    if "signal" in answer:
        number = int(answer["signal"])
        if number not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(number, signal.SIG_DFL)
        os.kill(os.getpid(), number)
        return 128 + number
    return int(answer["exit"])
