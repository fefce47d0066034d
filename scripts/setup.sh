#!/usr/bin/env bash
# Installs what building and testing Fluxbase Admin needs, skipping what is already
# there: Debian packages, the pinned cargo-pgrx, and pgrx's link to Postgres 15.
source "$(dirname "$0")/lib.sh"

APT_PACKAGES=(
    postgresql-15 postgresql-server-dev-15 postgresql-contrib  # the server, headers, pg_stat_statements
    libclang-dev clang                                         # bindgen, for pgrx
    libssl-dev pkg-config                                      # TLS to Postgres
    sudo openssl ca-certificates                               # pgrx test --runas; test certificates
    curl                                                       # make bench: the grid's pages over HTTP
    wrk                                                        # make bench: the pages under load
    chromium chromium-driver                                   # end-to-end tests in a real browser
    fonts-dejavu-core                                          # the font of the browser tests' screenshots
)

step "Checking system packages"
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || fail "missing packages: ${missing[*]}" "run as root, or: sudo apt-get install ${missing[*]}"
    info "installing ${missing[*]}"
    run_logged "$LOG_DIR/apt.log" "check the apt sources and run: apt-get update && apt-get install ${missing[*]}" -- \
        bash -c "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ${missing[*]}"
else
    info "all present"
fi

step "Checking cargo-pgrx"
command -v cargo >/dev/null || fail "cargo is not installed" "install Rust with rustup (https://rustup.rs)"
PGRX_VERSION=$(sed -n 's/^pgrx = "=\([0-9.]*\)"$/\1/p' "$REPO_ROOT/Cargo.toml")
[ -n "$PGRX_VERSION" ] || fail "cannot read the pinned pgrx version from Cargo.toml" 'pin it as pgrx = "=0.18.x"'
if cargo pgrx --version 2>/dev/null | grep -qx "cargo-pgrx $PGRX_VERSION"; then
    info "cargo-pgrx $PGRX_VERSION present"
else
    info "installing cargo-pgrx $PGRX_VERSION (about 8 minutes on 2 cores)"
    run_logged "$LOG_DIR/cargo-pgrx.log" "check network access to crates.io, then run: cargo install cargo-pgrx --version $PGRX_VERSION --locked" -- \
        cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --force
fi

PGRX_HOME="${PGRX_HOME:-$HOME/.pgrx}"
if ! grep -qs "pg${PG_MAJOR}.*=.*${PG_CONFIG}" "$PGRX_HOME/config.toml"; then
    info "linking pgrx to Postgres ${PG_MAJOR} ($PG_CONFIG)"
    run_logged "$LOG_DIR/pgrx-init.log" "run: cargo pgrx init --pg${PG_MAJOR} $PG_CONFIG" -- \
        cargo pgrx init --pg${PG_MAJOR} "$PG_CONFIG"
fi
