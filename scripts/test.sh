#!/usr/bin/env bash
# `make test`: installs what is missing, then runs every test layer and prints the
# counts of each:
#   1. #[pg_test] unit tests inside Postgres (cargo pgrx test, in pgrx's own cluster);
#   2. the fluxbase binary's unit tests;
#   3. out-of-process tests: a real cluster, the installed extension, each kind of
#      caller, and the fluxbase binary over HTTP.
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

bash scripts/setup.sh

RESULTS=()
TOTAL_PASSED=0
TOTAL_FAILED=0

# record LAYER LOG: sums cargo's "test result" lines of LOG.
record() {
    local layer="$1" log="$2" passed failed
    passed=$(sed -n 's/.*test result: [a-zA-Z]*\. \([0-9]*\) passed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    failed=$(sed -n 's/.*test result: [a-zA-Z]*\. [0-9]* passed; \([0-9]*\) failed.*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
    RESULTS+=("$(printf '%-44s %4s passed, %s failed' "$layer" "$passed" "$failed")")
    TOTAL_PASSED=$((TOTAL_PASSED + passed))
    TOTAL_FAILED=$((TOTAL_FAILED + failed))
    info "$passed passed, $failed failed"
}

# A test step that fails still reports its counts, then shows what failed.
test_step() {
    local layer="$1" log="$2"; shift 2
    : > "$log"
    local status=0
    "$@" > "$log" 2>&1 &
    local pid=$! waited=0
    while kill -0 "$pid" 2>/dev/null; do
        sleep 1; waited=$((waited + 1))
        if [ $((waited % 30)) -eq 0 ]; then
            printf '    %s... %ss: %s%s\n' "$DIM" "$waited" \
                "$(grep -E 'Compiling|Running|^test ' "$log" | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-90)" "$RESET"
        fi
    done
    wait "$pid" || status=$?
    record "$layer" "$log"
    if [ "$status" -ne 0 ]; then
        printf '%s    failures (full log: %s):%s\n' "$RED" "$log" "$RESET"
        if grep -q '^failures:' "$log"; then
            sed -n '/^failures:/,$p' "$log" | head -n 150 | sed 's/^/    /'
        else
            tail -n 40 "$log" | sed 's/^/    /'
        fi
        summary
        exit 1
    fi
}

summary() {
    echo
    printf '%sTest counts by layer%s\n' "$BOLD" "$RESET"
    for line in "${RESULTS[@]}"; do info "$line"; done
    echo "${TOTAL_PASSED} passed, ${TOTAL_FAILED} failed"
}

chown postgres:postgres "$FLUXBASE_PG_ROOT" 2>/dev/null || { mkdir -p "$FLUXBASE_PG_ROOT" && chown postgres:postgres "$FLUXBASE_PG_ROOT"; }

step "[1/4] Unit tests inside Postgres (cargo pgrx test; builds the extension, several minutes the first time)"
test_step "1. #[pg_test] inside Postgres" "$LOG_DIR/test-pgrx.log" \
    cargo pgrx test pg${PG_MAJOR} --runas postgres --pgdata "$FLUXBASE_PG_ROOT/pgrx-test"

step "[2/4] Installing the extension on this host (cargo pgrx install)"
# pgrx test installed its test build; put the plain build back for the other layers.
run_logged "$LOG_DIR/install-debug.log" "see the log; run: cargo pgrx install --pg-config $PG_CONFIG" -- \
    cargo pgrx install --pg-config "$PG_CONFIG"

step "[3/4] Building fluxbase and the out-of-process tests"
run_logged "$LOG_DIR/build-tests.log" "see the log; run: cargo build -p fluxbase && cargo test -p fluxbase -p fluxbase-tests --no-run" -- \
    bash -c "cargo build -p fluxbase && cargo test -p fluxbase -p fluxbase-tests --no-run"
export FLUXBASE_BIN="$REPO_ROOT/target/debug/fluxbase"
bash scripts/test-cluster.sh

step "[4/4] Running the binary's unit tests and the out-of-process tests"
# Every test binary runs even when one fails, so the counts are complete; a failure's
# message is enough without a backtrace.
export RUST_BACKTRACE=0
test_step "2. fluxbase binary unit tests" "$LOG_DIR/test-ctl.log" \
    cargo test --no-fail-fast -p fluxbase
test_step "3. SQL, CLI and HTTP tests (real cluster)" "$LOG_DIR/test-e2e.log" \
    cargo test --no-fail-fast -p fluxbase-tests

summary
