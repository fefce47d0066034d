# Fluxbase Admin. Two commands on a fresh machine:
#   make run    install what is missing, build, start a local Postgres 15 and the dashboard
#   make test   install what is missing and run every test layer
.PHONY: run test install bench

run:
	@bash scripts/dev.sh

test:
	@bash scripts/test.sh

# Speed figures (medians), printed, never asserted: builds in release, own cluster, own data.
bench:
	@bash scripts/bench.sh

# Builds and installs the extension (release) into this host's Postgres 15.
install:
	@bash scripts/setup.sh
	cargo pgrx install --release --pg-config /usr/lib/postgresql/15/bin/pg_config
