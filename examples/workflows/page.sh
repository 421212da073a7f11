#!/bin/sh
# The `page` node of triage.json: pages the on-call engineer about ticket $1.
# Reads the run's state (JSON) on standard input and prints, as a JSON object, what
# it adds to the state. Idempotent per ticket: if the platform dies while this runs,
# the node runs again on restart, and a ticket already paged is not paged twice.
set -eu
cat > /dev/null
if ! grep -qx "ticket $1" pages.log 2>/dev/null; then
  echo "ticket $1" >> pages.log
fi
printf '{"paged": true, "page_id": "page-%s"}\n' "$1"
