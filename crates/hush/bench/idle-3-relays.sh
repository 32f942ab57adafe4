#!/bin/sh
# Idle cost of `hush daemon` with 3 relays, measured on the daemon's own relay sockets
# (TCP_INFO: payload bytes, TLS records included, and segments; wire bytes = payload + estimated
# IP/TCP headers per segment, which is what counts keep-alive probes and bare ACKs).
#
#   crates/hush/bench/idle-3-relays.sh [hush binary] [ping interval] [run time] [keepalive]
#
# Defaults: target/release/hush (else target/debug/hush), 5h, 600s, 45s/15s/4 (the daemon's
# defaults, keep-alive `off` for the old behaviour). Starts three `hush up` stacks on free
# ports, makes a profile with one contact per relay (so the daemon holds one subscription on
# each relay), runs `hush daemon --ping-interval <p> --keepalive <k> --run-for <t>` and prints
# `hush daemon --stats`. Per-hour figures are the measured period scaled to an hour; a PING
# longer than the run is not in them (add 32.8 KB per PING interval).
set -eu
HUSH=${1:-}
if [ -z "$HUSH" ]; then
  if [ -x target/release/hush ]; then HUSH=target/release/hush; else HUSH=target/debug/hush; fi
fi
PING=${2:-5h}
RUN=${3:-600s}
KEEPALIVE=${4:-45s/15s/4}
W=$(mktemp -d)
trap 'kill $(cat "$W"/pids 2>/dev/null) 2>/dev/null || true; rm -rf "$W"' EXIT
for i in 1 2 3; do
  "$HUSH" up --data-dir "$W/up$i" --port-base 0 > "$W/up$i.out" 2>&1 &
  echo $! >> "$W/pids"
done
for i in 1 2 3; do
  until grep -q '^ready' "$W/up$i.out" 2>/dev/null; do sleep 0.2; done
done
R1=$(awk '/^relay:/{print $2}' "$W/up1.out")
R2=$(awk '/^relay:/{print $2}' "$W/up2.out")
R3=$(awk '/^relay:/{print $2}' "$W/up3.out")
"$HUSH" -p "$W/alice" init --name alice --relay "$R1" > /dev/null
"$HUSH" -p "$W/bob" init --name bob --relay "$R1" > /dev/null
for R in "$R1" "$R2" "$R3"; do
  L=$("$HUSH" -p "$W/alice" invite --relay "$R" | sed 's/^invitation: //')
  "$HUSH" -p "$W/bob" connect --relay "$R" "$L" > /dev/null
done
# let both sides finish the handshakes before measuring
sleep 3 | "$HUSH" -p "$W/alice" chat > /dev/null
sleep 3 | "$HUSH" -p "$W/bob" chat > /dev/null
echo "daemon: PING after $PING idle, keep-alive $KEEPALIVE, running $RUN"
"$HUSH" -p "$W/alice" daemon --no-desktop --ping-interval "$PING" --keepalive "$KEEPALIVE" --run-for "$RUN" --stats-interval 1h > "$W/daemon.out" 2>&1
"$HUSH" -p "$W/alice" daemon --stats
"$HUSH" -p "$W/alice" --json daemon --stats
