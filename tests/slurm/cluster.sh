#!/usr/bin/env bash
# A one-node SLURM cluster for the tests: controller, compute node and accounting on this
# machine, every file (configuration, state, logs, database, munge key) under one directory.
#
#   tests/slurm/cluster.sh start DIR   # prints: export SLURM_CONF=DIR/slurm.conf
#   tests/slurm/cluster.sh stop DIR    # cancels its jobs, stops the daemons it started, by pid
#
# Needs root and Debian's packages: apt-get install slurm-wlm slurmdbd munge mariadb-server
# (installed by .ci/run). Nothing outside DIR is read or written: the daemons get private
# ports and a private munge socket, so this runs beside a machine's own SLURM or munge.
# tests/test_slurm.py starts one cluster per pytest run; to try one by hand:
#   eval "$(tests/slurm/cluster.sh start /tmp/c)"; sinfo; ...; tests/slurm/cluster.sh stop /tmp/c
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
command="${1:-}"
state="${2:-}"
if [ -z "$command" ] || [ -z "$state" ]; then
    echo "usage: $0 start|stop DIR" >&2
    exit 2
fi
mkdir -p "$state"
state="$(cd "$state" && pwd)"
export SLURM_CONF="$state/slurm.conf"
# The daemons, in start order.
daemons=(munged mariadbd slurmdbd slurmctld slurmd)

pid_file() {
    case "$1" in
        munged) echo "$state/munge/munged.pid" ;;
        mariadbd) echo "$state/run/mariadb.pid" ;;
        *) echo "$state/run/$1.pid" ;;
    esac
}

# Wait up to $1 seconds for the command after it to succeed.
wait_for() {
    local seconds="$1"
    shift
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
}

# The pid recorded for a daemon, only while that pid still runs that daemon (never a reused pid).
running_pid() {
    local file pid
    file="$(pid_file "$1")"
    [ -s "$file" ] || return 1
    pid="$(tr -d '[:space:]' <"$file")"
    [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$1" ] && echo "$pid"
}

fail() {
    echo "test cluster: $1 (logs under $state/log)" >&2
    "$0" stop "$state" >/dev/null 2>&1 || true
    exit 1
}

stop() {
    if running_pid slurmctld >/dev/null; then
        # Jobs first: their processes belong to slurmstepd, which outlives slurmd.
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        wait_for 15 test -z "$(squeue -h -o %i 2>/dev/null)" || true
    fi
    # All at once (each takes a second or two to exit), then whatever is left, by force.
    local daemon pid pids=()
    for daemon in "${daemons[@]}"; do
        pid="$(running_pid "$daemon")" || continue
        kill -TERM "$pid" 2>/dev/null || true
        pids+=("$pid")
    done
    for pid in "${pids[@]}"; do
        if ! wait_for 15 test ! -d "/proc/$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
}

free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
sockets = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

start() {
    [ "$(id -u)" = 0 ] || fail "needs root"
    local program
    for program in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sacctmgr sbatch; do
        command -v "$program" >/dev/null || fail "$program is not installed"
    done
    if running_pid slurmctld >/dev/null; then
        fail "a cluster is already running in $state"
    fi
    mkdir -p "$state"/{munge,db,ctld,spool,run,log}
    chmod 700 "$state" "$state/munge"
    read -r ctld_port slurmd_port dbd_port db_port < <(free_ports 4)
    local cpus memory_mb
    cpus="$(nproc)"
    # At least 4 CPUs, so that several tiny tasks can run at once on a small machine.
    [ "$cpus" -ge 4 ] || cpus=4
    memory_mb="$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)"
    local name
    for name in slurm.conf slurmdbd.conf; do
        sed -e "s|@STATE@|$state|g" -e "s|@HOST@|$(hostname -s)|g" \
            -e "s|@NODE@|$(hostname -s)|g" -e "s|@CPUS@|$cpus|g" \
            -e "s|@MEMORY_MB@|$memory_mb|g" -e "s|@CTLD_PORT@|$ctld_port|g" \
            -e "s|@SLURMD_PORT@|$slurmd_port|g" -e "s|@DBD_PORT@|$dbd_port|g" \
            -e "s|@DB_PORT@|$db_port|g" "$here/$name.in" >"$state/$name"
    done
    chmod 600 "$state/slurmdbd.conf"  # slurmdbd refuses a readable one

    head -c 1024 /dev/urandom >"$state/munge/munge.key"
    chmod 400 "$state/munge/munge.key"
    munged --force --socket="$state/munge/munge.socket" --key-file="$state/munge/munge.key" \
        --pid-file="$(pid_file munged)" --log-file="$state/log/munged.log" \
        --seed-file="$state/munge/munged.seed" || fail "munged did not start"

    mariadb-install-db --no-defaults --datadir="$state/db" --user=root --skip-test-db \
        --auth-root-authentication-method=normal >"$state/log/mariadb-install.log" 2>&1 ||
        fail "mariadb-install-db failed"
    # Reachable from this machine only; the accounting daemon is its one client.
    setsid mariadbd --no-defaults --datadir="$state/db" --user=root --skip-grant-tables \
        --bind-address=127.0.0.1 --port="$db_port" --socket="$state/run/mariadb.sock" \
        --pid-file="$(pid_file mariadbd)" --log-error="$state/log/mariadb.log" \
        </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadb-admin --no-defaults --socket="$state/run/mariadb.sock" ping ||
        fail "mariadbd did not start"

    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF.
    slurmdbd || fail "slurmdbd did not start"
    wait_for 60 sacctmgr --immediate add cluster sweepbook-test ||
        fail "slurmdbd does not answer"
    slurmctld -f "$state/slurm.conf" || fail "slurmctld did not start"
    slurmd -f "$state/slurm.conf" -N "$(hostname -s)" || fail "slurmd did not start"
    wait_for 60 sh -c 'sinfo -h -o %t | grep -qx idle' || fail "the node did not come up idle"
    echo "export SLURM_CONF=$SLURM_CONF"
}

case "$command" in
    start) start ;;
    stop) stop ;;
    *)
        echo "usage: $0 start|stop DIR" >&2
        exit 2
        ;;
esac
