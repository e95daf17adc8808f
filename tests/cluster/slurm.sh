#!/usr/bin/env bash
# A single-node Slurm cluster with accounting, from Debian's packages, as plain processes (no systemd):
#
#   tests/cluster/slurm.sh install   apt-get the packages (root; skipped when they are there)
#   tests/cluster/slurm.sh start     write the configs, start munged, mariadbd, slurmdbd, slurmctld, slurmd,
#                                    create cluster, account and user with sacctmgr, wait until the node is idle
#   tests/cluster/slurm.sh stop      cancel every job, save sacct's table of all jobs to <state>/log/sacct.txt, then
#                                    end each daemon started here by its pid (and wait for it)
#   tests/cluster/slurm.sh env       the variable Slurm's commands need: SLURM_CONF=<state>/etc/slurm.conf
#
# Everything lives in $DEEPLENS_SLURM_STATE (default /tmp/deeplens-slurm): configs, database, spool, logs
# (log/*) and pid files (pid/*), except one link: /etc/slurm/slurm.conf -> <state>/etc/slurm.conf, where Slurm's
# commands look when SLURM_CONF is not set (the Slurm plugin's jobstep drops SLURM_CONF before its srun); start
# refuses to replace a slurm.conf that is not that link, and stop removes the link. Ports: 16817-16819 and 13306,
# on 127.0.0.1.
# Runs as root: the daemons, and so the jobs, run as root (a test cluster, not a site setup).
set -euo pipefail

STATE=${DEEPLENS_SLURM_STATE:-/tmp/deeplens-slurm}
ACCOUNT=deeplens
CLUSTER=deeplens
DB_PORT=13306
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)
# Daemons in start order; stop goes backwards.
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)

export SLURM_CONF=$STATE/etc/slurm.conf
SITE_CONF=/etc/slurm/slurm.conf

say() { echo "slurm.sh: $*" >&2; }

install_packages() {
    local program missing=
    for program in slurmctld slurmd slurmdbd sacctmgr munged mungekey mariadbd mariadb-install-db; do
        command -v $program >/dev/null || missing=1
    done
    [ -n "$missing" ] || return 0
    # No daemon may start from the packages' scripts: this script starts its own. policy-rc.d says so to
    # invoke-rc.d; it is removed again unless it was there before.
    local policy=/usr/sbin/policy-rc.d own_policy=
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && own_policy=1
    fi
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    if [ -n "$own_policy" ]; then rm -f $policy; fi
}

# Start a daemon in the foreground of its own session; its pid goes to pid/<name>.
launch() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$STATE/log/$name.out" 2>&1 &
    echo $! >"$STATE/pid/$name"
}

running() { [ -f "$STATE/pid/$1" ] && kill -0 "$(cat "$STATE/pid/$1")" 2>/dev/null; }

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every half second; fail naming WHAT and its daemon logs.
wait_for() {
    local seconds=$1 what=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            say "$what: not ready after ${seconds}s; logs in $STATE/log:"
            tail -n 20 "$STATE"/log/* >&2 || true
            return 1
        fi
        sleep 0.5
    done
}

write_configs() {
    local host node
    host=$(hostname -s)
    # This machine's CPUs, sockets, cores and memory as slurmd detects them (its first line, without UpTime).
    node=$(slurmd -C | head -n 1)
    mkdir -p "$STATE"/{etc,munge,db,ctld,spool,log,pid}
    chmod 755 "$STATE/munge"
    cat >"$SLURM_CONF" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/ctld/slurmctld.pid
SlurmdPidFile=$STATE/spool/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
# No cgroups (a container may have none): processes tracked by parentage, memory by sampling each second,
# and a step above its --mem is killed (state OUT_OF_MEMORY).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=task=1
JobAcctGatherParams=OverMemoryKill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# The MUNGE socket for talking to slurmdbd (AuthInfo's is for the rest).
AccountingStoragePass=$STATE/munge/munge.socket
AccountingStorageEnforce=associations,limits
AccountingStoreFlags=job_comment
MpiDefault=none
ReturnToService=2
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
# Two jobs may share a core: the tiny test runs' jobs mostly start up and wait on status checks, so two runs
# (and a local run beside them) overlap instead of queueing behind each other.
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
EOF
    cat >"$STATE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$STATE/munge/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/pid/slurmdbd.daemon.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$STATE/etc/slurmdbd.conf"
}

sql() { mariadb --no-defaults --socket="$STATE/db/mysqld.sock" -u root -e "$1"; }

start_database() {
    if [ ! -d "$STATE/db/mysql" ]; then
        mariadb-install-db --no-defaults --datadir="$STATE/db" --user=root --auth-root-authentication-method=socket \
            --skip-test-db >>"$STATE/log/mariadb-install.out" 2>&1
    fi
    launch mariadbd mariadbd --no-defaults --datadir="$STATE/db" --user=root --socket="$STATE/db/mysqld.sock" \
        --port=$DB_PORT --bind-address=127.0.0.1 --skip-name-resolve --log-error="$STATE/log/mariadbd.log"
    wait_for 60 mariadbd sql "SELECT 1"
    sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
         GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
}

# sacctmgr -i: no confirmation; adding what exists already is not an error here.
add_association() {
    sacctmgr -i add cluster $CLUSTER >/dev/null || true
    sacctmgr -i add account $ACCOUNT cluster=$CLUSTER description="deeplens-ssd tests" organization=tests >/dev/null ||
        true
    sacctmgr -i add user "$(id -un)" account=$ACCOUNT defaultaccount=$ACCOUNT cluster=$CLUSTER >/dev/null || true
    sacctmgr -n -P list associations user="$(id -un)" account=$ACCOUNT format=account | grep -qx $ACCOUNT
}

node_idle() { [ "$(sinfo -h -N -o %t)" = idle ]; }

start() {
    local began=$SECONDS socket=$STATE/munge/munge.socket
    for daemon in "${DAEMONS[@]}"; do
        if running "$daemon"; then
            say "$daemon is running already (pid $(cat "$STATE/pid/$daemon")): stop first"
            return 1
        fi
    done
    if [ -e $SITE_CONF ] && [ "$(readlink $SITE_CONF)" != "$SLURM_CONF" ]; then
        say "$SITE_CONF exists and is not a link to $SLURM_CONF: not replacing it"
        return 1
    fi
    if ! getent hosts "$(hostname -s)" >/dev/null; then
        say "this machine's name $(hostname -s) does not resolve (srun and slurmd need it): add it to /etc/hosts"
        return 1
    fi
    # A fresh cluster each time: no jobs, accounts or database rows of an earlier start.
    if [ -f "$SLURM_CONF" ]; then rm -rf "$STATE"; fi
    write_configs
    mkdir -p "$(dirname $SITE_CONF)"
    ln -sfn "$SLURM_CONF" $SITE_CONF
    [ -f "$STATE/munge/munge.key" ] || mungekey --create --keyfile="$STATE/munge/munge.key"
    launch munged munged --foreground --force --socket="$socket" \
        --key-file="$STATE/munge/munge.key" --pid-file="$STATE/munge/munged.pid" \
        --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"
    wait_for 20 munged sh -c "munge --socket='$socket' -n | unmunge --socket='$socket'"
    start_database
    launch slurmdbd slurmdbd -D
    wait_for 60 slurmdbd sacctmgr -n list cluster
    add_association
    launch slurmctld slurmctld -D -i
    wait_for 60 slurmctld scontrol ping
    launch slurmd slurmd -D -N "$(hostname -s)"
    wait_for 60 "node idle" node_idle
    say "$(sinfo --version) up in $((SECONDS - began)) s: $(sinfo -h -N -o '%N %t %c CPUs %m MB')"
}

stop() {
    if running slurmctld; then
        scancel --full --user="$(id -un)" 2>/dev/null || true
        wait_for 30 "jobs ending" sh -c '[ -z "$(squeue -h -o %i)" ]' || true
        # What ran, for whoever looks after the tests (the next start wipes the database).
        local fields=JobID,JobName%12,Comment%36,Account,AllocCPUS,ReqMem,Timelimit,State,Elapsed,MaxRSS
        sacct -a --starttime now-7days --format=$fields >"$STATE/log/sacct.txt" 2>&1 || true
    fi
    local daemon index pid
    for ((index = ${#DAEMONS[@]} - 1; index >= 0; index--)); do
        daemon=${DAEMONS[index]}
        [ -f "$STATE/pid/$daemon" ] || continue
        pid=$(cat "$STATE/pid/$daemon")
        if kill -TERM "$pid" 2>/dev/null; then
            for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            if kill -0 "$pid" 2>/dev/null; then
                say "$daemon (pid $pid) did not end on SIGTERM in 30 s: SIGKILL"
                kill -KILL "$pid" 2>/dev/null || true
            fi
        fi
        rm -f "$STATE/pid/$daemon"
    done
    if [ "$(readlink $SITE_CONF)" = "$SLURM_CONF" ]; then rm -f $SITE_CONF; fi
}

case ${1:-} in
    install) install_packages ;;
    start) start ;;
    stop) stop ;;
    env) echo "SLURM_CONF=$SLURM_CONF" ;;
    *)
        echo "usage: $0 install|start|stop|env" >&2
        exit 2
        ;;
esac
