#!/usr/bin/env bash
# PostgreSQL for paypipe development, tests and CI.
#
#   scripts/pg.sh up      start a private cluster (or reuse $DATABASE_URL if it answers)
#   scripts/pg.sh down    stop the private cluster
#   scripts/pg.sh status  say whether PostgreSQL answers
#   scripts/pg.sh url     print the connection URL ($DATABASE_URL wins)
#
# The private cluster lives in <repo>/.data/pg, listens on 127.0.0.1:$PAYPIPE_PG_PORT
# (default 55432) and keeps its unix socket in <repo>/.data/pg-run. Durability
# settings (fsync, synchronous_commit, full_page_writes) stay at their defaults: on.
# As root, initdb/pg_ctl run as the `postgres` user; if that user cannot reach the
# repository (e.g. a checkout under /root), the cluster goes to /tmp/paypipe-pg-<hash>.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${PAYPIPE_PG_PORT:-55432}"
PG_USER=postgres # OS user that owns the cluster when we run as root
DB_URL_DEFAULT="postgres://paypipe:paypipe@127.0.0.1:${PORT}/paypipe?sslmode=disable"
HASH="$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
FALLBACK="/tmp/paypipe-pg-${HASH}"

log() { printf 'pg.sh: %s\n' "$*" >&2; }
die() {
	printf 'pg.sh: error: %s\n' "$*" >&2
	exit 1
}
is_root() { [[ $(id -u) -eq 0 ]]; }

# as_pg runs a command as the cluster owner, from / so that an unreadable CWD
# does not bother it.
as_pg() {
	if is_root; then
		if command -v runuser >/dev/null 2>&1; then
			(cd / && runuser -u "$PG_USER" -- "$@")
		else
			(cd / && su "$PG_USER" -s /bin/bash -c "$(printf '%q ' "$@")")
		fi
	else
		(cd / && "$@")
	fi
}

# ---------------------------------------------------------------- binaries

find_bindir() {
	local d best=""
	if [[ -n "${PAYPIPE_PG_BIN:-}" && -x "${PAYPIPE_PG_BIN}/initdb" ]]; then
		echo "$PAYPIPE_PG_BIN"
		return 0
	fi
	# Debian/Ubuntu layout: newest major version wins.
	best="$(for d in /usr/lib/postgresql/*/bin; do
		[[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && echo "$d"
	done | sort -V | tail -n 1)"
	if [[ -n "$best" ]]; then
		echo "$best"
		return 0
	fi
	# Other layouts: initdb on PATH, or pg_config's bindir.
	if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(command -v initdb)"
		return 0
	fi
	if command -v pg_config >/dev/null 2>&1; then
		d="$(pg_config --bindir 2>/dev/null || true)"
		if [[ -n "$d" && -x "$d/initdb" ]]; then
			echo "$d"
			return 0
		fi
	fi
	return 1
}

BIN=""
FALLBACK_REASON=""
need_bindir() {
	[[ -n "$BIN" ]] && return 0
	if BIN="$(find_bindir)"; then
		return 0
	fi
	if is_root && command -v apt-get >/dev/null 2>&1; then
		log "PostgreSQL server binaries not found; installing with apt-get"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update
		apt-get install -y postgresql
		BIN="$(find_bindir)" || die "apt-get installed postgresql but initdb/pg_ctl are still not found"
		return 0
	fi
	die "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on PATH.
  Install them (Debian/Ubuntu: sudo apt-get install -y postgresql), set PAYPIPE_PG_BIN=<bindir>,
  or point DATABASE_URL at an existing server."
}

# psql/pg_isready for checks: prefer the cluster's own, then PATH.
client() {
	local name="$1" d
	if [[ -n "$BIN" && -x "$BIN/$name" ]]; then
		echo "$BIN/$name"
		return 0
	fi
	if d="$(find_bindir 2>/dev/null)" && [[ -x "$d/$name" ]]; then
		echo "$d/$name"
		return 0
	fi
	command -v "$name" 2>/dev/null
}

# answers URL: true if a server at URL accepts our login (psql), or at least
# accepts connections (pg_isready) when psql is not available.
answers() {
	local url="$1" psql isready
	if psql="$(client psql)"; then
		PGCONNECT_TIMEOUT=5 "$psql" "$url" -X -q -A -t -c 'select 1' >/dev/null 2>&1
	elif isready="$(client pg_isready)"; then
		PGCONNECT_TIMEOUT=5 "$isready" -q -d "$url" >/dev/null 2>&1
	else
		return 2
	fi
}

# ---------------------------------------------------------------- locations

# Sets BASE (parent of data+socket dirs), PGDATA_DIR and SOCK_DIR.
use_repo_dirs() {
	BASE="$REPO/.data"
	PGDATA_DIR="$BASE/pg"
	SOCK_DIR="$BASE/pg-run"
	LOCATION=repo
}
use_fallback_dirs() {
	BASE="$FALLBACK"
	PGDATA_DIR="$BASE/data"
	SOCK_DIR="$BASE/run"
	LOCATION=fallback
}

# Picks the existing cluster if there is one; otherwise the repo, unless the
# cluster owner could not use it.
locate() {
	if [[ -f "$REPO/.data/pg/PG_VERSION" ]]; then
		use_repo_dirs
	elif [[ -f "$FALLBACK/data/PG_VERSION" ]]; then
		use_fallback_dirs
	elif is_root && ! repo_usable_by_pg; then
		use_fallback_dirs
		FALLBACK_REASON="user $PG_USER cannot traverse $REPO"
	else
		use_repo_dirs
	fi
	# Unix socket paths are limited to ~107 bytes: keep the socket short.
	if ((${#SOCK_DIR} + 20 > 100)); then
		SOCK_DIR="$FALLBACK/run"
	fi
}

repo_usable_by_pg() {
	id "$PG_USER" >/dev/null 2>&1 || return 0 # decided later (ensure_pg_user)
	as_pg test -x "$REPO" || return 1
	if [[ -d "$REPO/.data" ]]; then
		as_pg test -x "$REPO/.data" || chmod o+x "$REPO/.data" 2>/dev/null || true
		as_pg test -x "$REPO/.data" || return 1
	fi
	return 0
}

ensure_pg_user() {
	is_root || return 0
	id "$PG_USER" >/dev/null 2>&1 && return 0
	log "creating system user $PG_USER"
	useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$PG_USER" ||
		die "no '$PG_USER' user and could not create one"
}

# mkdir_owned DIR MODE: create DIR owned by the cluster owner.
mkdir_owned() {
	local dir="$1" mode="$2"
	mkdir -p "$dir"
	if is_root; then
		chown "$PG_USER:" "$dir" || return 1
	fi
	chmod "$mode" "$dir"
}

prepare_dirs() {
	if [[ "$LOCATION" == repo ]]; then
		mkdir -p -m 0755 "$REPO/.data"
		if is_root && ! repo_usable_by_pg; then
			use_fallback_dirs
			FALLBACK_REASON="user $PG_USER cannot traverse $REPO"
		fi
	fi
	if [[ "$LOCATION" == fallback || "$SOCK_DIR" == "$FALLBACK/"* ]]; then
		if [[ -e "$FALLBACK" && ! -O "$FALLBACK" ]]; then
			die "$FALLBACK exists but is not owned by $(id -un); remove it"
		fi
		mkdir -p -m 0755 "$FALLBACK"
		chmod 0755 "$FALLBACK"
	fi
	if ! mkdir_owned "$PGDATA_DIR" 0700 || ! mkdir_owned "$SOCK_DIR" 0700; then
		[[ "$LOCATION" == repo ]] || die "cannot prepare $PGDATA_DIR for user $PG_USER"
		use_fallback_dirs
		FALLBACK_REASON="cannot hand $REPO/.data/pg to user $PG_USER"
		mkdir -p -m 0755 "$FALLBACK"
		mkdir_owned "$PGDATA_DIR" 0700 || die "cannot prepare $PGDATA_DIR"
		mkdir_owned "$SOCK_DIR" 0700 || die "cannot prepare $SOCK_DIR"
	fi
	if is_root && [[ "$(stat -c %U "$PGDATA_DIR")" != "$PG_USER" || -n "$(find "$PGDATA_DIR" ! -user "$PG_USER" -print -quit)" ]]; then
		chown -R "$PG_USER:" "$PGDATA_DIR"
	fi
	if [[ "$LOCATION" == fallback ]]; then
		log "${FALLBACK_REASON:+$FALLBACK_REASON: }cluster lives in $FALLBACK (not in $REPO/.data)"
	fi
}

# ---------------------------------------------------------------- cluster

running() {
	[[ -f "$PGDATA_DIR/PG_VERSION" ]] || return 1
	need_bindir
	as_pg "$BIN/pg_ctl" status -D "$PGDATA_DIR" >/dev/null 2>&1
}

sql_escape() { printf '%s' "${1//\'/\'\'}"; }

write_config() {
	local conf="$PGDATA_DIR/paypipe.conf"
	as_pg tee "$conf" >/dev/null <<EOF
# Written by scripts/pg.sh on every start; edit the script, not this file.
# Durability settings (fsync, synchronous_commit, full_page_writes) are left ON.
listen_addresses = '127.0.0.1'
port = ${PORT}
unix_socket_directories = '$(sql_escape "$SOCK_DIR")'
max_connections = 200
shared_buffers = 256MB
EOF
	if ! grep -q "^include_if_exists = 'paypipe.conf'" "$PGDATA_DIR/postgresql.conf"; then
		printf "\n# paypipe settings (scripts/pg.sh)\ninclude_if_exists = 'paypipe.conf'\n" |
			as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null
	fi
}

init_cluster() {
	[[ -f "$PGDATA_DIR/PG_VERSION" ]] && return 0
	log "initialising cluster in $PGDATA_DIR ($("$BIN/postgres" --version))"
	as_pg "$BIN/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C \
		--auth-local=trust --auth-host=scram-sha-256 >"$BASE/initdb.log" 2>&1 || {
		cat "$BASE/initdb.log" >&2
		die "initdb failed"
	}
}

start_cluster() {
	local logfile="$PGDATA_DIR/server.log"
	log "starting PostgreSQL on 127.0.0.1:$PORT (log: $logfile)"
	if ! as_pg "$BIN/pg_ctl" start -D "$PGDATA_DIR" -l "$logfile" -w -t 120 >/dev/null; then
		log "pg_ctl start failed; last lines of $logfile:"
		tail -n 30 "$logfile" >&2 || true
		die "could not start PostgreSQL (port $PORT busy? set PAYPIPE_PG_PORT)"
	fi
}

ensure_role_and_db() {
	as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK_DIR" -p "$PORT" -U postgres -d postgres >/dev/null <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'paypipe') THEN
    CREATE ROLE paypipe LOGIN PASSWORD 'paypipe' CREATEDB;
  END IF;
END
$$;
SELECT 'CREATE DATABASE paypipe OWNER paypipe'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'paypipe')
\gexec
SQL
}

# ---------------------------------------------------------------- commands

cmd_url() {
	if [[ -n "${DATABASE_URL:-}" ]]; then
		echo "$DATABASE_URL"
	else
		echo "$DB_URL_DEFAULT"
	fi
}

cmd_up() {
	if [[ -n "${DATABASE_URL:-}" ]]; then
		if answers "$DATABASE_URL"; then
			log "DATABASE_URL is set and answers; not starting a private cluster"
			cmd_url
			return 0
		fi
		log "warning: DATABASE_URL is set but does not answer; starting a private cluster anyway"
		log "warning: 'pg.sh url' keeps printing DATABASE_URL; unset it to use $DB_URL_DEFAULT"
	fi
	need_bindir
	ensure_pg_user
	locate
	if running; then
		log "already running ($PGDATA_DIR)"
	elif answers "$DB_URL_DEFAULT"; then
		# e.g. another checkout's cluster on the same port: use it, leave it alone.
		log "a PostgreSQL not managed by this checkout already answers at $DB_URL_DEFAULT; using it"
		echo "$DB_URL_DEFAULT"
		return 0
	else
		prepare_dirs
		init_cluster
		write_config
		start_cluster
	fi
	ensure_role_and_db
	log "ready"
	echo "$DB_URL_DEFAULT"
}

cmd_down() {
	locate
	if running; then
		log "stopping PostgreSQL ($PGDATA_DIR)"
		as_pg "$BIN/pg_ctl" stop -D "$PGDATA_DIR" -m fast -w -t 60 >/dev/null
		log "stopped"
	else
		log "not running"
	fi
}

cmd_status() {
	local url
	url="$(cmd_url)"
	locate
	if running; then
		log "private cluster running (data: $PGDATA_DIR, socket: $SOCK_DIR)"
	else
		log "private cluster not running (data: $PGDATA_DIR)"
	fi
	if answers "$url"; then
		echo "PostgreSQL answers at $url"
	else
		echo "PostgreSQL does not answer at $url"
		return 1
	fi
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
url) cmd_url ;;
*)
	echo "usage: $0 {up|down|status|url}" >&2
	exit 2
	;;
esac
