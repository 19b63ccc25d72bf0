#!/usr/bin/env bash
# End-to-end HTTP benchmark: a trivial axum server bare, behind
# tower_governor (keyed by X-API-Key; the rate limiter alone) and behind
# keygate (auth + scope + per-key limit), driven by wrk over 127.0.0.1 for a
# bounded time. Prints every round, then the medians and each server's
# throughput as a share of bare (the median of the per-round ratios).
#
#   scripts/bench-http.sh [seconds] [connections] [rounds]   (default 8 32 6)
#
# Needs wrk (Debian: apt-get install wrk). Server and load generator share
# the machine, so each gets one core: every server runs one tokio worker
# pinned to CPU 0 and wrk one thread pinned to CPU 1 (taskset, when there
# are two CPUs or more). Rounds run bare, tower_governor, keygate one after
# another, so machine noise hits all three alike.
set -euo pipefail

secs=${1:-8}
conns=${2:-32}
rounds=${3:-6}
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --example bench_server
bin=${CARGO_TARGET_DIR:-target}/release/examples/bench_server

pin_server=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0) pin_wrk=(taskset -c 1)
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

modes=(bare governor keygate)
declare -A port key
port[bare]=3801 port[governor]=3803 port[keygate]=3802

# Not called in $(…): the server's pid must reach the cleanup trap.
start() { # mode
  local out; out=$(mktemp)
  "${pin_server[@]}" "$bin" "$1" "127.0.0.1:${port[$1]}" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do grep -q READY "$out" && break; sleep 0.1; done
  grep -q READY "$out" || { cat "$out" >&2; exit 1; }
  key[$1]=$(sed -n 's/^KEY=//p' "$out")
  rm -f "$out"
}

run() { # mode duration -> "rps p99_ms"
  local m=$1 header=()
  [ -n "${key[$m]}" ] && header=(-H "X-API-Key: ${key[$m]}")
  "${pin_wrk[@]}" wrk -t1 -c"$conns" -d"$2" --latency "${header[@]}" "http://127.0.0.1:${port[$m]}/" |
    awk '/Requests\/sec/ {rps=$2} / 99%/ {p=$2} END {
      if (p ~ /us$/) { sub(/us/,"",p); p=p/1000 } else if (p ~ /ms$/) { sub(/ms/,"",p) } else if (p ~ /s$/) { sub(/s/,"",p); p=p*1000 }
      printf "%.0f %.3f\n", rps, p }'
}

for m in "${modes[@]}"; do start "$m"; done
# Warm every server (and keygate's cache) before measuring.
for m in "${modes[@]}"; do run "$m" 1s >/dev/null; done

declare -A rps p99 ratio last
for r in $(seq "$rounds"); do
  line="round $r:"
  for m in "${modes[@]}"; do
    read -r a b < <(run "$m" "${secs}s")
    rps[$m]+="$a " p99[$m]+="$b "
    line+=" $m $a req/s (p99 $b ms) |"
    last[$m]=$a
  done
  for m in governor keygate; do
    ratio[$m]+="$(awk -v x="${last[$m]}" -v b="${last[bare]}" 'BEGIN { printf "%.4f", x/b }') "
  done
  echo "$line"
  echo "          keygate/bare $(echo "${ratio[keygate]}" | awk '{print $NF}')  governor/bare $(echo "${ratio[governor]}" | awk '{print $NF}')"
done

median() { printf '%s\n' $1 | sort -g | awk '{a[NR]=$1} END { if (NR % 2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2 }'; }
echo
echo "| server | req/s (median of $rounds × ${secs}s, $conns conns) | p99 ms (median) | share of bare (median of per-round ratios) |"
echo "|---|---:|---:|---:|"
echo "| bare axum | $(median "${rps[bare]}") | $(median "${p99[bare]}") | 100 % |"
for m in governor keygate; do
  name=$([ "$m" = governor ] && echo "tower_governor (X-API-Key)" || echo "keygate (memory store, warm)")
  echo "| $name | $(median "${rps[$m]}") | $(median "${p99[$m]}") | $(awk -v r="$(median "${ratio[$m]}")" 'BEGIN { printf "%.1f %%", 100*r }') |"
done
