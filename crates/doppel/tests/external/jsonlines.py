"""How the scripts beside this file talk to the Rust tests that run them: what they observed as
JSON lines on stdout, one a line and flushed at once (the tests read lines while a script runs),
and a failure as a message on stderr with an exit code that tells a timeout from a refusal.

It imports no MQTT library, so that every script can use it whichever client it is built on.
"""

import json
import sys

# Exit codes, so the caller can tell a timeout from a refusal.
EXIT_TIMEOUT = 2
EXIT_REFUSED = 3


def fail(code, message):
    """Ends the script with exit code `code`, `message` on stderr."""
    print(message, file=sys.stderr, flush=True)
    sys.exit(code)


def emit(line):
    """One JSON line on stdout, flushed at once: callers read lines while the script runs."""
    print(json.dumps(line, separators=(",", ":")), flush=True)
