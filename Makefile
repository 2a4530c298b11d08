# crsd: one command runs it, one command tests it.
.PHONY: run build deb test lint bench bench-backups bench-load bench-failover bench-monitor bench-cluster bench-reshard

run: ## install what is missing, build crsd alone, start it with the embedded defaults
	./scripts/install-deps.sh
	cargo build --release -p crsd --bin crsd
	./target/release/crsd serve $(ARGS)

build: ## the release binary of crsd alone: target/release/crsd
	cargo build --release -p crsd --bin crsd

deb: ## the Debian package (release binary, systemd unit, /etc/crsd/crsd.toml): target/debian/crsd_<version>_<arch>.deb
	./scripts/deb.sh

test: ## install what is missing and run every test
	./scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

bench: ## benchmarks (not tests): prints ratios against raw redis-server operations
	./scripts/bench.sh

bench-backups: ## backup, download and restore of 5,000,000 keys against BGSAVE, nginx and a raw load
	BENCH_SUITE=backups ./scripts/bench.sh

bench-load: ## 500 signed clients for 20 s while backups run: p50/p99, fails on any 5xx or error
	BENCH_SUITE=load ./scripts/bench.sh

bench-failover: ## kill -9 of a master behind its stable address (crsd up, crsd down, hand-run Sentinel + HAProxy): outage p50/max, lost writes, the address's cost
	BENCH_SUITE=failover ./scripts/bench.sh

bench-cluster: ## a 3-shard x 1-replica Redis Cluster: CreateInstances -> running next to redis-cli --cluster create, and kill -9 of a shard's master -> every slot writable (crsd up, hand-run cluster): p50/max
	BENCH_SUITE=cluster ./scripts/bench.sh

bench-reshard: ## 3 -> 5 shards of a cluster holding 1M keys: crsd's UpgradeInstance RedisShardNum (whole task) next to redis-cli --cluster rebalance --cluster-pipeline 100, keys moved per second
	BENCH_SUITE=reshard ./scripts/bench.sh

bench-monitor: ## one round of crsd's own monitoring history (one INFO a node, the round stored) for 100 nodes: wall and CPU time, extrapolated to 1,000
	BENCH_SUITE=monitor ./scripts/bench.sh
