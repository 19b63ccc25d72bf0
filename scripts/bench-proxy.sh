#!/usr/bin/env bash
# keygate serve behind nginx, measured beside nginx alone: the same nginx,
# the same upstream (an nginx server answering 200), one with the README's
# auth_request configuration (docs/proxies/nginx.conf) asking keygate serve
# about every request, one proxying straight through. wrk over 127.0.0.1,
# bounded in time; rounds alternate so machine noise hits both alike.
#
#   scripts/bench-proxy.sh [seconds] [connections] [rounds]   (default 8 32 6)
#
# Prints each round, the median throughput ratio, and the latency each adds
# at one connection (p50 and p99 over the run), so the auth hop's own cost
# shows. nginx (one worker) and keygate serve share CPU 0; wrk runs on CPU 1.
# Needs nginx and wrk (Debian: apt-get install nginx wrk).
set -euo pipefail

secs=${1:-8}
conns=${2:-32}
rounds=${3:-6}
cd "$(dirname "$0")/.."
root=$PWD

nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "nginx not found: apt-get install nginx" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet -p keygate-cli
keygate=${CARGO_TARGET_DIR:-target}/release/keygate
keygate=$(realpath "$keygate")

pin_server=() pin_wrk=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
  pin_server=(taskset -c 0) pin_wrk=(taskset -c 1)
fi

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

export KEYGATE_DATABASE_URL="sqlite://$dir/keys.db"
"$keygate" migrate >/dev/null
key=$("$keygate" --json keys create --owner service:bench --name bench --scopes read |
  sed -n 's/^ *"key": "\(.*\)",$/\1/p')

sed 's/^kind = .*/kind = "nginx"/; s/^listen = .*/listen = "127.0.0.1:3902"/' \
  docs/proxies/serve-nginx.toml >"$dir/serve.toml"
# Audit events off the terminal: nginx's access log is off too.
RUST_LOG=warn "${pin_server[@]}" "$keygate" serve --config "$dir/serve.toml" \
  >"$dir/serve.log" 2>&1 &
pids+=($!)

site=$(sed -e 's/127\.0\.0\.1:9090/127.0.0.1:3902/; s/127\.0\.0\.1:8080/127.0.0.1:3904/; s/127\.0\.0\.1:8000/127.0.0.1:3901/' \
  docs/proxies/nginx.conf)
cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/body; proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi; uwsgi_temp_path $dir/uwsgi; scgi_temp_path $dir/scgi;
$site
  # nginx alone in front of the same upstream.
  server { listen 127.0.0.1:3903; location / {
    proxy_http_version 1.1; proxy_set_header Connection ""; proxy_pass http://app; } }
  # The upstream.
  server { listen 127.0.0.1:3904; location / { return 200 "ok\n"; } }
}
CONF
"${pin_server[@]}" "$nginx" -p "$dir" -c "$dir/nginx.conf" -g "daemon off; master_process off;" &
pids+=($!)

for port in 3901 3902 3903 3904; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" http://127.0.0.1:3901/)
[ "$code" = 200 ] || { echo "keygate behind nginx answered $code" >&2; cat "$dir/serve.log" "$dir/error.log" >&2; exit 1; }

declare -A port=([alone]=3903 [keygate]=3901)

# -> "rps p50_ms p99_ms"
run() { # mode duration connections
  "${pin_wrk[@]}" wrk -t1 -c"$3" -d"$2" --latency -H "X-API-Key: $key" "http://127.0.0.1:${port[$1]}/" |
    awk 'function ms(v) { if (v ~ /us$/) { sub(/us/,"",v); return v/1000 } if (v ~ /ms$/) { sub(/ms/,"",v); return v+0 } sub(/s/,"",v); return v*1000 }
      /Requests\/sec/ {rps=$2} / 50%/ {p50=ms($2)} / 99%/ {p99=ms($2)} END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }'
}

for m in alone keygate; do run "$m" 2s "$conns" >/dev/null; done

printf '%-6s %12s %12s %8s\n' round "alone rps" "keygate rps" ratio
ratios=()
for r in $(seq "$rounds"); do
  a=$(run alone "${secs}s" "$conns" | cut -d' ' -f1)
  k=$(run keygate "${secs}s" "$conns" | cut -d' ' -f1)
  ratio=$(awk -v a="$a" -v k="$k" 'BEGIN { printf "%.3f", k / a }')
  ratios+=("$ratio")
  printf '%-6s %12s %12s %8s\n' "$r" "$a" "$k" "$ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END { if (NR % 2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2 }')
echo "median keygate ÷ alone: $median   (${rounds} rounds of ${secs}s, ${conns} connections)"

echo
echo "latency at one connection (${secs}s each):"
printf '%-8s %10s %10s\n' "" "p50 ms" "p99 ms"
read -r _ a50 a99 < <(run alone "${secs}s" 1)
read -r _ k50 k99 < <(run keygate "${secs}s" 1)
printf '%-8s %10s %10s\n' alone "$a50" "$a99" keygate "$k50" "$k99"
awk -v a50="$a50" -v a99="$a99" -v k50="$k50" -v k99="$k99" \
  'BEGIN { printf "auth hop adds  p50 %.3f ms   p99 %.3f ms\n", k50 - a50, k99 - a99 }'
