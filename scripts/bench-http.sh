#!/usr/bin/env bash
# End-to-end HTTP benchmark: a trivial axum server bare and behind keygate,
# driven by wrk over 127.0.0.1 for a bounded time. Prints requests/s, p99
# latency and keygate's throughput as a share of bare.
#
#   scripts/bench-http.sh [seconds] [connections] [rounds]
#
# Needs wrk (Debian: apt-get install wrk). Server and load generator share
# the machine, so each gets one core: the server runs one tokio worker and
# wrk one thread. Rounds alternate bare/keygate so machine noise hits both;
# the medians are reported.
set -euo pipefail

secs=${1:-10}
conns=${2:-32}
rounds=${3:-3}
port_bare=3801
port_kg=3802
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --example bench_server
bin=target/release/examples/bench_server

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Not called in $(…): the server's pid must reach the cleanup trap.
start() { # mode port; sets $key
  local out; out=$(mktemp)
  "$bin" "$1" "127.0.0.1:$2" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q READY "$out" && break; sleep 0.1; done
  grep -q READY "$out" || { cat "$out" >&2; exit 1; }
  key=$(sed -n 's/^KEY=//p' "$out")
  rm -f "$out"
}

start bare $port_bare
start keygate $port_kg

run() { # port header... -> "rps p99_ms"
  local port=$1; shift
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" "http://127.0.0.1:$port/" |
    awk '/Requests\/sec/ {rps=$2} / 99%/ {p=$2} END {
      if (p ~ /us$/) { sub(/us/,"",p); p=p/1000 } else if (p ~ /ms$/) { sub(/ms/,"",p) } else if (p ~ /s$/) { sub(/s/,"",p); p=p*1000 }
      printf "%.0f %.3f\n", rps, p }'
}

# Warm both (and keygate's cache) before measuring.
wrk -t1 -c4 -d1s "http://127.0.0.1:$port_bare/" >/dev/null
wrk -t1 -c4 -d1s -H "X-API-Key: $key" "http://127.0.0.1:$port_kg/" >/dev/null

bare_rps=(); bare_p99=(); kg_rps=(); kg_p99=()
for r in $(seq "$rounds"); do
  read -r a b < <(run $port_bare); bare_rps+=("$a"); bare_p99+=("$b")
  read -r a b < <(run $port_kg -H "X-API-Key: $key"); kg_rps+=("$a"); kg_p99+=("$b")
  echo "round $r: bare ${bare_rps[-1]} req/s p99 ${bare_p99[-1]} ms | keygate ${kg_rps[-1]} req/s p99 ${kg_p99[-1]} ms"
done

median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
br=$(median "${bare_rps[@]}"); bp=$(median "${bare_p99[@]}")
kr=$(median "${kg_rps[@]}"); kp=$(median "${kg_p99[@]}")
echo
echo "| server | req/s (median of $rounds × ${secs}s, $conns conns) | p99 ms | share of bare |"
echo "|---|---|---|---|"
echo "| bare axum | $br | $bp | 100 % |"
awk -v b="$br" -v k="$kr" -v p="$kp" 'BEGIN { printf "| keygate (memory store, warm) | %d | %s | %.1f %% |\n", k, p, 100*k/b }'
