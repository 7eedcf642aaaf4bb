#!/usr/bin/env bash
# Portability matrix (`make matrix`; not part of CI): the notebook regression tests under
# numeric environments that another machine would give, and under another seed.
#   cpu-default : ATEN_CPU_CAPABILITY=default (PyTorch's generic kernels, as on a CPU without AVX2)
#   mkl-auto    : MKL_CBWR=AUTO, no ONEDNN_MAX_CPU_ISA (MKL's and oneDNN's fastest branch for this CPU)
#   one-thread  : OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 (another summation order in every reduction)
#   seed-1      : DL_LABS_SEED=1 with --nbval-lax (assertions and result bands; the exact tier
#                 is skipped because seed-dependent cells legitimately print other numbers)
# Each run is strict nbval (exact tier + bands) unless noted. Logs: reports/matrix/<name>.log
set -u
cd "$(dirname "$0")/.."
mkdir -p reports/matrix
declare -A ENVS=(
  [cpu-default]="ATEN_CPU_CAPABILITY=default"
  [mkl-auto]="MKL_CBWR=AUTO"
  [one-thread]="OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1"
  [seed-1]="DL_LABS_SEED=1"
)
names=("${@:-cpu-default mkl-auto one-thread seed-1}")
read -r -a names <<< "${names[*]}"
summary=reports/matrix/summary.md
echo "| run | environment | result | seconds |" > "$summary"
echo "|---|---|---|---:|" >> "$summary"
status=0
for name in "${names[@]}"; do
  mode=--nbval
  [ "$name" = seed-1 ] && mode=--nbval-lax
  start=$(date +%s)
  echo "== $name: ${ENVS[$name]} ($mode)"
  env -u ONEDNN_MAX_CPU_ISA make --no-print-directory nbval NBVAL_MODE="$mode" \
    NBVAL_ENV="${ENVS[$name]}" > "reports/matrix/$name.log" 2>&1
  rc=$?
  line=$(grep -E "^(=+ )?[0-9]+ (passed|failed)" "reports/matrix/$name.log" | tail -1)
  [ -z "$line" ] && line=$(tail -1 "reports/matrix/$name.log")
  echo "   rc=$rc: $line"
  echo "| $name | \`${ENVS[$name]}\` $mode | ${line//|/\/} | $(( $(date +%s) - start )) |" >> "$summary"
  [ $rc = 0 ] || status=1
done
cat "$summary"
exit $status
