#!/usr/bin/env bash
# The measuring half of runtime.sh, run inside its private mount namespace.
set -euo pipefail
repo=$1 runs=$2 out=$3
work=$(mktemp -d /tmp/hull-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

declare -A bin=([hull]=$repo/target/dist/hull [crun]=$(command -v crun) [runc]=$(command -v runc))
command -v youki >/dev/null && bin[youki]=$(command -v youki)
order=(hull crun runc)
[ -n "${bin[youki]:-}" ] && order+=(youki)

"$repo/bundles/busybox/build.sh" "$work/bundle" /bin/true >/dev/null 2>&1
# crun 1.8 knows runtime-spec up to 1.1; the bundle uses nothing newer.
jq '.ociVersion = "1.0.2"' "$work/bundle/config.json" >"$work/c" && mv "$work/c" "$work/bundle/config.json"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f\n", m}'; }

# `run` to completion: hyperfine gives wall times per run and mean user/system CPU per
# batch; batches of the runtimes alternate (rounds), so drift over time hits all alike.
# Batches of 5: hyperfine reports CPU only as a batch mean, so many small batches give a
# median that one slow run (the host's other tenants) cannot move much.
per=5
rounds=$(( (runs + per - 1) / per ))
for r in $(seq "$rounds"); do
    cmds=()
    for rt in "${order[@]}"; do cmds+=("${bin[$rt]} --root $work/state-$rt run -b $work/bundle h-$rt"); done
    hyperfine -N -w 3 -r "$per" --export-json "$work/h$r.json" "${cmds[@]}" >/dev/null 2>&1
    for i in "${!order[@]}"; do
        rt=${order[$i]}
        jq -r ".results[$i].times[] * 1000" "$work/h$r.json" >>"$work/wall-$rt"
        jq -r ".results[$i] | (.user + .system) * 1000" "$work/h$r.json" >>"$work/cpu-$rt"
    done
done
# Peak RSS (KiB) of the runtime and its children, from GNU time.
for i in $(seq 10); do
    for rt in "${order[@]}"; do
        /usr/bin/time -f '%M' -o "$work/t" "${bin[$rt]}" --root "$work/state-$rt" run -b "$work/bundle" "m$i" >/dev/null 2>&1
        cat "$work/t" >>"$work/rss-$rt"
    done
done

# Phases, wall ms via date (ns), interleaved.
phase() {
    local s e
    s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
    echo $(( (e - s) / 1000 )) | awk '{printf "%.3f\n", $1/1000}'
}
for i in $(seq "$runs"); do
    for rt in "${order[@]}"; do
        r=("${bin[$rt]}" --root "$work/state-$rt")
        phase "${r[@]}" create -b "$work/bundle" "p$i" >>"$work/create-$rt"
        phase "${r[@]}" start "p$i" >>"$work/start-$rt"
        # Let /bin/true finish so delete measures the stopped case.
        while "${r[@]}" state "p$i" 2>/dev/null | grep -q '"running"'; do :; done
        phase "${r[@]}" delete "p$i" >>"$work/delete-$rt"
    done
done

seq_total() {
    local rt=$1 s e
    s=$(date +%s%N)
    for i in $(seq 100); do "${bin[$rt]}" --root "$work/state-$rt" run -b "$work/bundle" "s$i" >/dev/null 2>&1; done
    e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
}
par_total() {
    local rt=$1 s e
    s=$(date +%s%N)
    seq 10 | xargs -P10 -I{} "${bin[$rt]}" --root "$work/state-$rt" run -b "$work/bundle" "q{}" >/dev/null 2>&1
    e=$(date +%s%N); echo $(( (e - s) / 1000000 ))
}
declare -A seq100 par10
for rt in "${order[@]}"; do seq100[$rt]=$(seq_total "$rt"); par10[$rt]=$(par_total "$rt"); done

{
    echo "# Runtime benchmark"
    echo
    echo "$(date -u +%Y-%m-%d), $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), cgroup v1 hybrid (unified mount hidden for all runtimes)."
    echo "Versions: hull $(${bin[hull]} --version | awk '{print $2}'), $(crun --version | head -1), $(runc --version | head -1)."
    echo "Bundle: busybox-static, process /bin/true. \`run\` wall: median of $((rounds * per)) runs in $rounds alternating hyperfine batches; CPU (user+sys): median of the batch means; peak RSS: median of 10 runs (GNU time); phases: medians of $runs interleaved runs. Ratios are hull/peer."
    echo
    echo "| runtime | run wall ms | run CPU ms | peak RSS KiB | create ms | start ms | delete ms | 100 sequential ms | 10 parallel ms | binary bytes |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
    for rt in "${order[@]}"; do
        echo "| $rt | $(median <"$work/wall-$rt") | $(median <"$work/cpu-$rt") | $(median <"$work/rss-$rt") | $(median <"$work/create-$rt") | $(median <"$work/start-$rt") | $(median <"$work/delete-$rt") | ${seq100[$rt]} | ${par10[$rt]} | $(stat -L -c %s "${bin[$rt]}") |"
    done
    echo
    echo "| ratio hull/peer | run CPU | run wall | peak RSS | 100 sequential |"
    echo "|---|---|---|---|---|"
    for rt in "${order[@]}"; do
        [ "$rt" = hull ] && continue
        r() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
        echo "| hull/$rt | $(r "$(median <"$work/cpu-hull")" "$(median <"$work/cpu-$rt")") | $(r "$(median <"$work/wall-hull")" "$(median <"$work/wall-$rt")") | $(r "$(median <"$work/rss-hull")" "$(median <"$work/rss-$rt")") | $(r "${seq100[hull]}" "${seq100[$rt]}") |"
    done
} | tee "$out"
