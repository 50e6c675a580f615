#!/usr/bin/env bash
# castplane demo: the control plane on SQLite, one local node agent (joined automatically),
# a reseller, a customer and an Icecast service, started, fed a sine tone by ffmpeg.
# Prints a stream URL you can play, and the console's URL with logins to sign in with.
# Ctrl-C stops everything cleanly.
#
# Ports: API 7400, agent listener 7401, services 8000-8099 (override with CASTPLANE_DEMO_API,
# CASTPLANE_DEMO_AGENT_LISTEN, CASTPLANE_DEMO_PORTS). State goes to ./demo-data (replaced on
# every run; override with CASTPLANE_DEMO_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

API="${CASTPLANE_DEMO_API:-127.0.0.1:7400}"
AGENT_LISTEN="${CASTPLANE_DEMO_AGENT_LISTEN:-127.0.0.1:7401}"
PORTS="${CASTPLANE_DEMO_PORTS:-8000-8099}"
DEMO="${CASTPLANE_DEMO_DIR:-$PWD/demo-data}"
BIN="$PWD/target/debug"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

./scripts/install-deps.sh
say "building castplane and its console"
cargo build --locked --bins -q
./scripts/build-console.sh

# Value of the first "key": "value" in JSON on stdin (castctl -o json pretty-prints).
json_field() { sed -n "s/^ *\"$1\": *\"\\([^\"]*\\)\".*/\\1/p" | head -n 1; }
castctl() { "$BIN/castctl" "$@"; }
export CASTCTL_CONFIG="$DEMO/castctl.toml"

rm -rf "$DEMO"
mkdir -p "$DEMO"
CP_PID="" AGENT_PID="" SOURCE_PID="" SERVICE=""

cleanup() {
  trap - EXIT INT TERM
  echo
  say "stopping"
  [ -n "$SOURCE_PID" ] && kill "$SOURCE_PID" 2>/dev/null || true
  if [ -n "$SERVICE" ] && [ -n "$AGENT_PID" ]; then
    # Stopping the agent leaves services running (by design); stop the service first.
    timeout 60 "$BIN/castctl" service stop "$SERVICE" --wait >/dev/null 2>&1 || echo "demo: could not stop $SERVICE cleanly" >&2
  fi
  # Whatever happened above, leave no streaming server behind.
  pkill -TERM -f "$DEMO/agent/services/" 2>/dev/null || true
  for pid in $AGENT_PID $CP_PID; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  say "done (state and logs kept in $DEMO)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_until() { # SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out waiting for $what (logs in $DEMO)"
    sleep 0.2
  done
}

say "starting the control plane on $API (SQLite in $DEMO/control)"
# Each daemon runs in its own session, so Ctrl-C reaches only this script, which then stops
# them in order: stream, service, agent, control plane.
setsid "$BIN/castplane-control" --data-dir "$DEMO/control" --listen "$API" --agent-listen "$AGENT_LISTEN" \
  --console-dir "$PWD/console/dist" >"$DEMO/control.log" 2>&1 &
CP_PID=$!
wait_until 30 "the admin token" test -s "$DEMO/control/admin.token"
castctl login --endpoint "http://$API" --token "$(cat "$DEMO/control/admin.token")" >/dev/null

say "registering this host as a node and joining its agent"
JOIN_TOKEN=$(castctl node add demo-host --public-host 127.0.0.1 --ports "$PORTS" -o json | json_field token)
[ -n "$JOIN_TOKEN" ] || die "no join token"
CASTPLANE_JOIN_TOKEN="$JOIN_TOKEN" "$BIN/castplane-agent" join --control-plane "https://$AGENT_LISTEN" \
  --data-dir "$DEMO/agent" >>"$DEMO/agent.log" 2>&1 || die "join failed (see $DEMO/agent.log)"
setsid "$BIN/castplane-agent" run --data-dir "$DEMO/agent" >>"$DEMO/agent.log" 2>&1 &
AGENT_PID=$!
node_online() { castctl node get demo-host -o json | grep -q NODE_STATUS_ONLINE; }
wait_until 30 "the node to come online" node_online

say "creating a reseller, its token, a customer and an Icecast service"
RESELLER=$(castctl reseller create --name "Demo Reseller" --allow-types icecast,video --default-type icecast \
  --max-services 10 --max-listener-slots 1000 -o json | json_field id)
RESELLER_TOKEN=$(castctl token create --reseller "$RESELLER" --description demo -o json | json_field secret)
as_reseller() { CASTPLANE_TOKEN="$RESELLER_TOKEN" "$BIN/castctl" --endpoint "http://$API" "$@"; }
CUSTOMER=$(as_reseller customer create --name "Demo Customer" --email demo@example.com -o json | json_field id)
as_reseller service create --customer "$CUSTOMER" --type icecast --name demo-fm --display-name "castplane demo FM" \
  --max-listeners 100 --max-bitrate-kbps 128 --disk-mb 500 --bandwidth-gb 50
SERVICE=demo-fm

say "setting console logins for the admin and the reseller"
new_password() { head -c 18 /dev/urandom | base64 | tr -d '/+='; }
ADMIN_PASSWORD=$(new_password)
RESELLER_PASSWORD=$(new_password)
printf '%s\n' "$ADMIN_PASSWORD" | castctl console-login set --admin --email admin@demo.example --password-stdin >/dev/null
printf '%s\n' "$RESELLER_PASSWORD" | castctl console-login set --reseller "$RESELLER" --email reseller@demo.example \
  --password-stdin >/dev/null

say "starting demo-fm (a durable action, executed by the agent)"
castctl service start "$SERVICE" --wait

CONNECTION=$(castctl service connection "$SERVICE" -o json)
STREAM_URL=$(json_field stream_url <<<"$CONNECTION")
SOURCE_PASSWORD=$(json_field source_password <<<"$CONNECTION")
SOURCE_PORT=$(sed -n 's/^ *"source_port": *\([0-9]*\).*/\1/p' <<<"$CONNECTION" | head -n 1)

say "feeding a 440 Hz sine tone with ffmpeg"
setsid ffmpeg -hide_banner -loglevel error -re -f lavfi -i sine=frequency=440 -c:a libmp3lame -b:a 128k \
  -content_type audio/mpeg -f mp3 "icecast://source:${SOURCE_PASSWORD}@127.0.0.1:${SOURCE_PORT}/live" \
  >"$DEMO/ffmpeg.log" 2>&1 &
SOURCE_PID=$!
stream_has_audio() { [ "$(curl -s --max-time 5 "$STREAM_URL" | head -c 20000 | wc -c)" -ge 20000 ]; }
wait_until 30 "audio on $STREAM_URL" stream_has_audio

castctl service get "$SERVICE"
cat <<MSG

  Console:    http://$API/
              sign in as reseller@demo.example / $RESELLER_PASSWORD
              or as the admin: admin@demo.example / $ADMIN_PASSWORD

  Stream URL: $STREAM_URL
  Try:  curl -s $STREAM_URL | head -c 100000 | ffprobe -hide_banner -   (Audio: mp3, 128 kb/s)
  Or play it in any player (mpv, VLC, a browser). Manage it with castctl, e.g.:
        CASTCTL_CONFIG=$CASTCTL_CONFIG $BIN/castctl service get $SERVICE

  Press Ctrl-C to stop everything.
MSG
wait "$SOURCE_PID" || true
die "the ffmpeg source exited (see $DEMO/ffmpeg.log)"
