# Shared by the scripts behind `make run` and `make test`: step reporting, running a
# slow command with progress, and running Postgres tools as the `postgres` user.
# shellcheck shell=bash

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config"
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
# Clusters live where the postgres user can reach them (a checkout under /root cannot).
FLUXBASE_PG_ROOT="${FLUXBASE_PG_ROOT:-/var/lib/postgresql/fluxbase}"
LOG_DIR="${REPO_ROOT}/target/logs"
mkdir -p "$LOG_DIR"

if [ -t 1 ]; then BOLD=$'\e[1m'; RED=$'\e[31m'; DIM=$'\e[2m'; RESET=$'\e[0m'; else BOLD=; RED=; DIM=; RESET=; fi

CURRENT_STEP=""
step() {
    CURRENT_STEP="$1"
    printf '%s==> %s%s\n' "$BOLD" "$1" "$RESET"
}

info() { printf '    %s\n' "$*"; }

# fail "what went wrong" "how to fix it" [logfile]
fail() {
    printf '%serror:%s %s failed: %s\n' "$RED" "$RESET" "${CURRENT_STEP:-setup}" "$1" >&2
    [ -n "${2:-}" ] && printf '  fix: %s\n' "$2" >&2
    if [ -n "${3:-}" ] && [ -f "$3" ]; then
        printf '  last lines of %s:\n' "$3" >&2
        tail -n 15 "$3" | sed 's/^/    /' >&2
    fi
    exit 1
}

# run_logged LOGFILE FIX -- COMMAND...
# Runs a slow command with its output in LOGFILE, printing a progress line every 20 s
# (how many crates cargo has compiled, or the log's last line), and on failure the
# step, the fix and the end of the log instead of a wall of output.
run_logged() {
    local log="$1" fix="$2"; shift 3
    : > "$log"
    "$@" >> "$log" 2>&1 &
    local pid=$! waited=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1
        waited=$((waited + 1))
        if [ $((waited % 20)) -eq 0 ]; then
            local compiled last
            compiled=$(grep -c 'Compiling ' "$log" || true)
            last=$(grep -v '^\s*$' "$log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-90)
            printf '    %s... %ss, %s crates compiled; %s%s\n' "$DIM" "$waited" "$compiled" "$last" "$RESET"
        fi
    done
    if ! wait "$pid"; then
        fail "see $log" "$fix" "$log"
    fi
}

# Runs a command as the postgres user (Postgres refuses to run as root).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        "$@"
    elif [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        sudo -u postgres -- "$@"
    fi
}

# Rust toolchain on PATH even in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME}/.cargo/bin/cargo" ]; then
    export PATH="${HOME}/.cargo/bin:${PATH}"
fi
