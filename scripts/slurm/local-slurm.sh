#!/usr/bin/env bash
# A sharded `lumen eval` on a real Slurm on this machine, checked against one process.
#
# Installs Debian's slurm-wlm and munge (needs root and apt), starts munged,
# slurmctld and slurmd on localhost (one node, 4 CPU slots, no cgroups, no
# systemd, state under a temporary directory), submits the job array emitted by
# `lumen eval --emit-slurm 4` for 2 methods × 2 metrics × 40 digits, waits for the
# merge job, and compares every merged CSV byte for byte with a one-process run.
# Every daemon it started is stopped by PID on exit.
#
#   scripts/slurm/local-slurm.sh [path/to/lumen]   (default: target/release/lumen)
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
lumen=$(realpath "${1:-$root/target/release/lumen}")
[ -x "$lumen" ] || { echo "error: no lumen binary at $lumen (cargo build --release first)" >&2; exit 1; }
wait_s=${LUMEN_SLURM_WAIT:-600}
t0=$(date +%s)
work=$(mktemp -d /tmp/lumen-slurm.XXXXXX)
pids=()

stop() {
    local rc=$?
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        echo "failed (exit $rc); logs in $work" >&2
        tail -n 20 "$work"/*.log "$work"/run/slurm/logs/* 2>/dev/null >&2 || true
    else
        rm -rf "$work"
    fi
}
trap stop EXIT

step() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

# 1. Packages. A policy-rc.d keeps their postinst from starting services.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    step "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    planted=
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && planted=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >"$work/apt.log" 2>&1 || { cat "$work/apt.log" >&2; exit 1; }
    [ -n "$planted" ] && rm -f /usr/sbin/policy-rc.d
fi
t_installed=$(date +%s)
step "$(slurmctld -V), $(munged -V 2>&1 | head -1)"

# 2. munged with its own key and socket.
mkdir -p "$work/munge" "$work/state" "$work/spool"
chmod 700 "$work/munge"
dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
sock="$work/munge/munge.socket"
munged --foreground --force --key-file="$work/munge/munge.key" --socket="$sock" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munged.log" --seed-file="$work/munge/seed" \
    >"$work/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { echo "error: munged did not start" >&2; exit 1; }

# 3. slurm.conf: one node with 4 slots, process tracking without cgroups.
host=$(hostname -s)
port=$(( 20000 + RANDOM % 20000 ))
cat > "$work/slurm.conf" <<CONF
ClusterName=lumen
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
NodeName=$host CPUs=4 State=UNKNOWN
PartitionName=lumen Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$work/slurm.conf"
slurmctld -D -c -f "$SLURM_CONF" >"$work/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$work/slurmd.out" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
    state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
    case "$state" in idle*|mix*|alloc*) break ;; esac
    sleep 0.2
done
case "$state" in idle*|mix*|alloc*) ;; *) echo "error: node not up (state '$state')" >&2; exit 1 ;; esac
t_up=$(date +%s)
step "slurmctld and slurmd up: $(sinfo -h -o '%P %D nodes %C cpus(A/I/O/T) %T')"

# 4. Emit, submit, wait for the merge job.
args=(eval --methods saliency,smoothgrad --metrics deletion,insertion --n 40 --batch-size 10
      --param smoothgrad.n=10 --param deletion.steps=16 --param insertion.steps=16 --seed 3)
cd "$work"
"$lumen" "${args[@]}" --emit-slurm 4 --out "$work/run"
sh "$work/run/slurm/submit.sh"
read -r array merge < "$work/run/slurm/jobs"
deadline=$(( $(date +%s) + wait_s ))
while squeue -h -j "$array,$merge" 2>/dev/null | grep -q .; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "error: jobs still queued after $wait_s s" >&2; squeue >&2; exit 1; }
    sleep 1
done
mstate=$(scontrol show job "$merge" | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
[ "$mstate" = COMPLETED ] || { echo "error: merge job $merge ended $mstate" >&2; exit 1; }
t_done=$(date +%s)
step "array job $array and merge job $merge completed in $(( t_done - t_up )) s"
cat "$work/run/slurm/logs/merge.out"

# 5. The same run in one process; the CSVs must be identical.
"$lumen" "${args[@]}" --out "$work/single" >/dev/null
for f in per_example.csv summary.csv curves.csv layers.csv; do
    cmp "$work/single/$f" "$work/run/$f"
done
t_end=$(date +%s)
step "merged CSVs byte-identical to the one-process run (per_example, summary, curves, layers)"
echo "timings: install $(( t_installed - t0 )) s, daemons up $(( t_up - t_installed )) s, sharded run $(( t_done - t_up )) s, one-process run $(( t_end - t_done )) s, total $(( t_end - t0 )) s"
