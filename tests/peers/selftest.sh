#!/bin/sh
# Self-test of the peer scripts on 127.0.0.1 without iwf; see selftest.py.
exec python3 "$(dirname "$0")/selftest.py" "$@"
