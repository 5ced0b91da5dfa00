#!/usr/bin/env bash
# Standalone NATS server (JetStream) for paypipe.
#
#   scripts/nats.sh up      start it in the background (idempotent), wait for 127.0.0.1:4222
#   scripts/nats.sh down    stop it and wait for it to exit
#   scripts/nats.sh status  say whether it runs and accepts connections
#
# Config: infra/nats/nats.conf. Log: .data/nats.log, pid: .data/nats.pid,
# JetStream store: .data/nats. The tests do not need this: they embed NATS.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$REPO" # nats.conf's store_dir is relative to the working directory

CONF="infra/nats/nats.conf"
DATA=".data"
PIDFILE="$DATA/nats.pid"
LOGFILE="$DATA/nats.log"
HOST=127.0.0.1
PORT=4222
TIMEOUT="${PAYPIPE_NATS_TIMEOUT:-30}"

log() { printf 'nats.sh: %s\n' "$*" >&2; }
die() {
	printf 'nats.sh: error: %s\n' "$*" >&2
	exit 1
}

pid_alive() {
	local pid
	[[ -f "$PIDFILE" ]] || return 1
	pid="$(<"$PIDFILE")"
	[[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

cmd_up() {
	if pid_alive; then
		log "already running (pid $(<"$PIDFILE"))"
	else
		if port_open; then
			die "something else already listens on $HOST:$PORT"
		fi
		mkdir -p "$DATA"
		# Resolve the binary `go tool nats-server` would run (builds it if needed),
		# so that the pid we record is the server's and not the go command's.
		local bin
		bin="$(go tool -n nats-server)" || die "cannot build nats-server (go tool -n nats-server)"
		log "starting nats-server -c $CONF (log: $DATA/nats.log)"
		nohup "$bin" -c "$CONF" >>"$LOGFILE" 2>&1 </dev/null &
		echo $! >"$PIDFILE"
	fi
	local deadline=$((SECONDS + TIMEOUT))
	until port_open; do
		if ! pid_alive; then
			tail -n 20 "$LOGFILE" >&2 || true
			rm -f "$PIDFILE"
			die "nats-server exited during startup"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 20 "$LOGFILE" >&2 || true
			die "nats-server did not accept connections on $HOST:$PORT within ${TIMEOUT}s"
		fi
		sleep 0.2
	done
	log "ready"
	echo "nats://$HOST:$PORT"
}

cmd_down() {
	if ! pid_alive; then
		rm -f "$PIDFILE"
		log "not running"
		return 0
	fi
	local pid deadline
	pid="$(<"$PIDFILE")"
	log "stopping nats-server (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	deadline=$((SECONDS + TIMEOUT))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "still running after ${TIMEOUT}s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		sleep 0.2
	done
	rm -f "$PIDFILE"
	log "stopped"
}

cmd_status() {
	if pid_alive; then
		log "running (pid $(<"$PIDFILE"))"
	else
		log "not running (no live pid in $PIDFILE)"
	fi
	if port_open; then
		echo "NATS accepts connections at nats://$HOST:$PORT"
	else
		echo "NATS does not accept connections at nats://$HOST:$PORT"
		return 1
	fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
*)
	echo "usage: $0 {up|down|status}" >&2
	exit 2
	;;
esac
