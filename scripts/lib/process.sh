# Helpers the benchmark scripts share for watching a process they started. Sourced, not run.

# CPU time of process $1 in clock ticks (user plus kernel; Linux's USER_HZ is 100).
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Resident memory of process $1 in KiB.
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# Waits until process $1 is quiet: under 5 % of one core (10 ticks) for 2 s, for at most
# ${2:-300} seconds. The hub builds its fleet index in the background after "ready" (about 20 s
# of both cores at 1M twins); measuring before it is done measures the build.
wait_quiet() {
    local pid=$1 rounds=$(( ${2:-300} / 2 )) before after
    for _ in $(seq 1 "$rounds"); do
        before=$(cpu_ticks "$pid")
        sleep 2
        after=$(cpu_ticks "$pid")
        [ $(( after - before )) -lt 10 ] && return 0
    done
    # Still busy at the limit: measure anyway, as a person watching would.
    return 0
}

# Waits until file $2 (the stdout of `doppel serve`, process $1) holds the "doppel ready" line,
# for at most $3 seconds; on a process that died or a timeout, prints $4 (its log file) and fails.
wait_ready() {
    local pid=$1 out=$2 seconds=$3 log=${4:-$2}
    for _ in $(seq 1 $(( seconds * 100 ))); do
        grep -q '^doppel ready$' "$out" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; return 1; }
        sleep 0.01
    done
    echo "doppel not ready within $seconds s" >&2
    return 1
}
