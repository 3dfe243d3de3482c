#!/usr/bin/env bash
# The README's "Behind a load balancer" run, as written there: three server.ts instances with
# --proxy-protocol on 127.0.0.1:7001-7003 (metrics on 9101-9103), the balancer from deploy/ on
# 127.0.0.1:7000, `client.ts --bench -c 6 -s 1024 --duration 5s --port 7000 --json` through it, and
# instance 2 killed with SIGKILL two seconds in. Loopback only; every process is stopped at the end.
#
#   bash bench/balancer_run.sh haproxy|nginx [--tls]   (as root, from the repository root)
#
# Writes bench/results/balancer_run_<balancer>[_tls].json (the client's result) and .md (what it
# shows: exchanges, errors, mismatches, what each instance echoed, the balancer's view).
set -euo pipefail
cd "$(dirname "$0")/.."
balancer=${1:?usage: bench/balancer_run.sh haproxy|nginx [--tls]}
tls=${2:-}
name="balancer_run_${balancer}${tls:+_tls}"
out=bench/results
tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

server_tls=()
client_tls=()
if [ -n "$tls" ]; then
  server_tls=(--tls-cert tests/fixtures/tls_cert.pem --tls-key tests/fixtures/tls_key.pem)
  client_tls=(--tls --ca tests/fixtures/tls_cert.pem)
fi
for i in 1 2 3; do
  deno run --allow-net --allow-read server.ts --tcp --port 700$i --proxy-protocol \
    --metrics 127.0.0.1:910$i -q "${server_tls[@]}" >"$tmp/echo$i.out" 2>&1 &
  pids+=($!)
  eval "echo${i}_pid=$!"
done
for i in 1 2 3; do
  for _ in $(seq 100); do grep -q "listening" "$tmp/echo$i.out" && break; sleep 0.1; done
done
case "$balancer" in
  haproxy) haproxy -W -db -f deploy/haproxy.cfg >"$tmp/balancer.log" 2>&1 & ;;
  nginx) nginx -c "$PWD/deploy/nginx.conf" -e stderr -g 'daemon off;' >"$tmp/balancer.log" 2>&1 & ;;
  *) echo "usage: bench/balancer_run.sh haproxy|nginx [--tls]" >&2; exit 2 ;;
esac
pids+=($!)
# Ready once the frontend accepts and every instance has answered a health check (HAProxy) or
# once the frontend accepts (nginx checks passively).
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/7000) 2>/dev/null && break; sleep 0.1; done
sleep 2
deno run --allow-net --allow-read client.ts --bench -c 6 -s 1024 --duration 5s --port 7000 \
  "${client_tls[@]}" --json >"$tmp/result.json" 2>"$tmp/client.err" &
client=$!
sleep 2
kill -KILL "$echo2_pid"
wait "$client" || true
for i in 1 3; do kill -INT "$(eval echo \$echo${i}_pid)"; done
sleep 1
cp "$tmp/result.json" "$out/$name.json"
{
  echo "# $name — $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  echo "How: \`bash bench/balancer_run.sh $balancer $tls\` (three instances, the deploy/ recipe, client.ts --bench -c 6 -s 1024 --duration 5s --port 7000 ${client_tls[*]}, instance 2 SIGKILLed at 2 s)."
  echo
  echo '```'
  deno eval "const r = JSON.parse(Deno.readTextFileSync('$tmp/result.json').trim().split('\n').at(-1)); console.log('requests', r.requests, 'errors', r.errors, 'mismatches', r.mismatches, 'failed', r.failed, 'rps', Math.round(r.rps))"
  echo "client stderr: $(head -c 300 "$tmp/client.err")"
  for i in 1 2 3; do echo "echo$i: $(grep -E '^stopped' "$tmp/echo$i.out" || echo '(killed: no summary)')"; done
  echo "balancer:"
  grep -iE "DOWN|UP|is going|failed|connect\(\)|upstream" "$tmp/balancer.log" | head -8 || true
  echo '```'
} >"$out/$name.md"
cat "$out/$name.md"
