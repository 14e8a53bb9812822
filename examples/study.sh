#!/bin/bash
# examples/study.sh: does the Transformer beat the RNN as the data grows? Trains every --models model on nested
# subsets of one task (the first N training pairs, for each N of --sizes: gradformer-train --max-train-sentences),
# once per --seeds seed, each run for the same budget (--budget-steps N optimizer steps, or --budget-minutes M of
# time, with --threads T threads per run, --jobs J runs at once), then collects each run's final test BLEU and chrF from its
# train.log and writes
#   DIR/results.tsv   one row per run: model, pairs, seed, steps, minutes, threads, bleu, chrf (pairs: those
#                     the run trained on, the whole training split where N exceeds it)
#   DIR/results.md    the same as a Markdown table, then mean, min and max over the seeds per model and size
#   DIR/study.svg     test BLEU against training pairs (log x axis), one line per model through the seed means,
#                     error bars from the seeds' min to max
#   DIR/runs/MODEL-pPAIRS-sSEED/   each run's gradformer-train --out (train.log, best.safetensors, loss.svg)
#
# The full study of docs/study.md ("Does the Transformer beat the RNN?"), as it ran on two cores:
#   examples/study.sh --task grammar-long --sizes "2000 8000 32000 128000" \
#     --models "rnn-attention attention-seq2seq transformer-tiny" --seeds "1 2" --threads 1 --jobs 2 \
#     --train-args "--max-tokens 2048 --warmup 300 --valid-every 400" --budget-steps 2000 --out runs/study-steps
# and the same with --budget-minutes 2 --budget-clock cpu --out runs/study-minutes for the equal-time view. With
# --budget-clock cpu a run's minutes are its process's CPU time, so runs that share the cores with other work
# (or with each other: --jobs) still get equal budgets; with --threads 1 on otherwise idle cores that is the wall
# time. The test scores are gradformer-train's (the best checkpoint, beam 4 unless --train-args sets --test-beam).
#
# A run whose DIR/runs/.../study.row exists finished earlier and is not trained again, so an interrupted study
# resumes where it stopped by running the same command; a run that did not finish is started afresh
# (gradformer-train --overwrite on its own directory). The tables and the plot are rewritten from all finished
# runs, each through a temporary file renamed into place, so a failure leaves the previous ones whole.
# Needs bash, awk and the built programs (ninja -C build): --programs DIR, else $GRADFORMER_PROGRAMS, else the
# directory of gradformer-train on PATH, else build/examples beside this script.
set -euo pipefail

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  cat <<'EOF'
Options:
  --task NAME           a gradformer-train task (default grammar-long)
  --sizes "N ..."       training pairs per subset, each a prefix of the next (default "2000 8000 32000 128000")
  --models "M ..."      zoo models (default "rnn-attention attention-seq2seq transformer-tiny")
  --seeds "S ..."       seeds of initialisation, dropout and batch order (default "1 2")
  --budget-steps N      every run stops after N optimizer steps
  --budget-minutes M    every run stops after M minutes (give exactly one of the two budgets)
  --budget-clock C      what --budget-minutes counts: wall (default) or cpu, the run's CPU time
  --threads T           threads of each run, recorded in the table (default: the cores, nproc)
  --jobs J              runs trained at once (default 1); J x T should not exceed the cores
  --out DIR             where the runs, tables and plot go (required)
  --programs DIR        the directory holding gradformer-train
  --train-args "ARGS"   more gradformer-train flags for every run, the same for all (e.g. "--valid-every 500")
  -h, --help            this text
EOF
}

fail() {
  echo "study.sh: $*" >&2
  exit 2
}

task=grammar-long
sizes="2000 8000 32000 128000"
models="rnn-attention attention-seq2seq transformer-tiny"
seeds="1 2"
budget_steps=""
budget_minutes=""
budget_clock=wall
threads=$(nproc)
jobs=1
out=""
programs="${GRADFORMER_PROGRAMS:-}"
train_args=""
while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --task | --sizes | --models | --seeds | --budget-steps | --budget-minutes | --budget-clock | --threads | --jobs | \
      --out | --programs | --train-args)
      [ $# -ge 2 ] || fail "$1 needs a value"
      case "$1" in
        --task) task=$2 ;;
        --sizes) sizes=$2 ;;
        --models) models=$2 ;;
        --seeds) seeds=$2 ;;
        --budget-steps) budget_steps=$2 ;;
        --budget-minutes) budget_minutes=$2 ;;
        --budget-clock) budget_clock=$2 ;;
        --threads) threads=$2 ;;
        --jobs) jobs=$2 ;;
        --out) out=$2 ;;
        --programs) programs=$2 ;;
        --train-args) train_args=$2 ;;
      esac
      shift 2 ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
done

[ -n "$out" ] || fail "--out DIR is required (see --help)"
if [ -n "$budget_steps" ] && [ -n "$budget_minutes" ]; then fail "give --budget-steps or --budget-minutes, not both"; fi
if [ -z "$budget_steps" ] && [ -z "$budget_minutes" ]; then fail "give a budget: --budget-steps N or --budget-minutes M"; fi
positive_integer='^[1-9][0-9]*$'
[ -z "$budget_steps" ] || [[ "$budget_steps" =~ $positive_integer ]] ||
  fail "--budget-steps '$budget_steps' is not a positive whole number"
[ -z "$budget_minutes" ] || [[ "$budget_minutes" =~ ^[0-9]*\.?[0-9]+$ && ! "$budget_minutes" =~ ^[0.]+$ ]] ||
  fail "--budget-minutes '$budget_minutes' is not a positive number"
[[ "$threads" =~ $positive_integer ]] || fail "--threads '$threads' is not a positive whole number"
[[ "$jobs" =~ $positive_integer ]] || fail "--jobs '$jobs' is not a positive whole number"
[[ "$budget_clock" == wall || "$budget_clock" == cpu ]] || fail "--budget-clock '$budget_clock' is neither wall nor cpu"
read -ra size_list <<<"$sizes"
read -ra model_list <<<"$models"
read -ra seed_list <<<"$seeds"
read -ra extra_args <<<"$train_args"
[ ${#size_list[@]} -gt 0 ] || fail "--sizes is empty"
[ ${#model_list[@]} -gt 0 ] || fail "--models is empty"
[ ${#seed_list[@]} -gt 0 ] || fail "--seeds is empty"
for size in "${size_list[@]}"; do [[ "$size" =~ $positive_integer ]] || fail "--sizes: '$size' is not a positive whole number"; done
for seed in "${seed_list[@]}"; do [[ "$seed" =~ ^[0-9]+$ ]] || fail "--seeds: '$seed' is not a whole number"; done

if [ -z "$programs" ]; then
  if command -v gradformer-train >/dev/null; then
    programs=$(dirname "$(command -v gradformer-train)")
  else
    programs="$(cd "$(dirname "$0")/.." && pwd)/build/examples"
  fi
fi
train="$programs/gradformer-train"
[ -x "$train" ] || fail "$train is not an executable (build it: ninja -C build, or give --programs DIR)"

mkdir -p "$out/runs" || fail "cannot create $out/runs"
if [ -n "$budget_steps" ]; then
  budget=(--max-steps "$budget_steps")
else
  budget=(--max-minutes "$budget_minutes" --budget-clock "$budget_clock")
fi

# The training pairs a run used, from its log's task line ("task NAME: N train, ..."): --max-train-sentences
# above the task's training split trains on the whole split, and the table says how many that was.
pairs_of() {
  awk '/^task / && match($0, /: [0-9]+ train,/) { print substr($0, RSTART + 2, RLENGTH - 9); found = 1; exit }
       END { if (!found) exit 1 }' "$1"
}

# The last "test BLEU = x" and "test chrF2 = y" of a train.log, and the steps of its "stopped: ... after N steps".
scores_of() {
  awk '/test BLEU = / { for (i = 1; i < NF; ++i) if ($i == "BLEU" && $(i + 1) == "=") bleu = $(i + 2) }
       /test chrF2 = / { for (i = 1; i < NF; ++i) if ($i == "chrF2" && $(i + 1) == "=") chrf = $(i + 2) }
       /stopped: .* after [0-9]+ steps/ { for (i = 1; i < NF; ++i) if ($(i + 1) == "steps") steps = $i }
       END { if (bleu == "" || chrf == "" || steps == "") exit 1; print steps "\t" bleu "\t" chrf }' "$1"
}

# Writes stdin to $1 through a temporary file beside it, renamed into place once complete.
replace_file() {
  local temporary="$1.partial"
  cat >"$temporary" || { rm -f "$temporary"; fail "cannot write $temporary"; }
  mv -f "$temporary" "$1" || fail "cannot rename $temporary to $1"
}

# Trains one run and writes its study.row (exit status 2 on failure, with the reason on stderr).
train_run() {
  local model=$1 size=$2 seed=$3 run=$4 started finished scores minutes steps bleu chrf pairs
  mkdir -p "$run" || fail "cannot create $run"
  started=$(date +%s.%N)
  if ! "$train" --task "$task" --model "$model" --max-train-sentences "$size" --seed "$seed" "${budget[@]}" \
    --threads "$threads" --out "$run" --overwrite "${extra_args[@]}" >"$run/output.txt" 2>&1; then
    tail -n 5 "$run/output.txt" >&2
    fail "gradformer-train failed on $model, $size pairs, seed $seed (its output: $run/output.txt)"
  fi
  finished=$(date +%s.%N)
  scores=$(scores_of "$run/train.log") || fail "$run/train.log holds no final test BLEU, chrF and step count"
  pairs=$(pairs_of "$run/train.log") || fail "$run/train.log does not say how many training pairs the run used"
  minutes=$(awk -v a="$started" -v b="$finished" 'BEGIN { printf "%.2f", (b - a) / 60 }')
  IFS=$'\t' read -r steps bleu chrf <<<"$scores"
  [ "$pairs" = "$size" ] || echo "study.sh: $task has $pairs training pairs, so the $size-pair subset is all of them"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$model" "$pairs" "$seed" "$steps" "$minutes" "$threads" "$bleu" \
    "$chrf" | replace_file "$run/study.row"
  echo "study.sh: finished $model, $pairs pairs, seed $seed: test BLEU $bleu, chrF $chrf, $minutes minutes"
}

# Waits for one background run (any, with --jobs > 1) and stops the study if it failed; the others still
# running are left to finish, so their work is not lost.
failed_runs=0
wait_for_a_run() {
  if ! wait -n; then failed_runs=$((failed_runs + 1)); fi
  running=$((running - 1))
}

total=$((${#model_list[@]} * ${#size_list[@]} * ${#seed_list[@]}))
done_runs=0
running=0
for model in "${model_list[@]}"; do
  for size in "${size_list[@]}"; do
    for seed in "${seed_list[@]}"; do
      done_runs=$((done_runs + 1))
      run="$out/runs/$model-p$size-s$seed"
      if [ -f "$run/study.row" ]; then
        echo "study.sh: [$done_runs/$total] $model, $size pairs, seed $seed: finished earlier, kept"
        continue
      fi
      while [ "$running" -ge "$jobs" ]; do wait_for_a_run; done
      [ "$failed_runs" -eq 0 ] || break 3
      echo "study.sh: [$done_runs/$total] $model, $size pairs, seed $seed -> $run"
      train_run "$model" "$size" "$seed" "$run" &
      running=$((running + 1))
    done
  done
done
while [ "$running" -gt 0 ]; do wait_for_a_run; done
[ "$failed_runs" -eq 0 ] || fail "$failed_runs run(s) failed (above); the finished ones are kept, rerun to resume"

# The rows of this command's runs, in its order of models, sizes and seeds.
{
  printf 'model\tpairs\tseed\tsteps\tminutes\tthreads\tbleu\tchrf\n'
  for model in "${model_list[@]}"; do
    for size in "${size_list[@]}"; do
      for seed in "${seed_list[@]}"; do cat "$out/runs/$model-p$size-s$seed/study.row"; done
    done
  done
} | replace_file "$out/results.tsv"

if [ -n "$budget_steps" ]; then
  budget_text="$budget_steps steps"
elif [ "$budget_clock" = cpu ]; then
  budget_text="$budget_minutes CPU minutes"
else
  budget_text="$budget_minutes minutes"
fi
awk -F'\t' -v task="$task" -v budget="$budget_text" '
  NR == 1 { next }
  {
    bleu = $7 + 0; chrf = $8 + 0
    rows[++n] = sprintf("| %s | %s | %s | %s | %s | %s | %.2f | %.2f |", $1, $2, $3, $4, $5, $6, bleu, chrf)
    key = $1 SUBSEP $2
    if (!(key in count)) { order[++groups] = key; bmin[key] = bleu; bmax[key] = bleu; cmin[key] = chrf; cmax[key] = chrf }
    count[key]++; bsum[key] += bleu; csum[key] += chrf
    if (bleu < bmin[key]) bmin[key] = bleu; if (bleu > bmax[key]) bmax[key] = bleu
    if (chrf < cmin[key]) cmin[key] = chrf; if (chrf > cmax[key]) cmax[key] = chrf
  }
  END {
    printf "Task `%s`, budget %s per run; test BLEU and chrF of each run (gradformer-train'"'"'s final test scores).\n\n", task, budget
    print "| model | pairs | seed | steps | minutes | threads | BLEU | chrF |"
    print "|---|---:|---:|---:|---:|---:|---:|---:|"
    for (i = 1; i <= n; ++i) print rows[i]
    print "\nMean over the seeds ± half the spread (min–max in brackets).\n"
    print "| model | pairs | seeds | BLEU | chrF |"
    print "|---|---:|---:|---:|---:|"
    for (i = 1; i <= groups; ++i) {
      key = order[i]; split(key, part, SUBSEP)
      printf "| %s | %s | %d | %.2f ± %.2f (%.2f–%.2f) | %.2f ± %.2f (%.2f–%.2f) |\n", part[1], part[2], count[key],
             bsum[key] / count[key], (bmax[key] - bmin[key]) / 2, bmin[key], bmax[key],
             csum[key] / count[key], (cmax[key] - cmin[key]) / 2, cmin[key], cmax[key]
    }
  }' "$out/results.tsv" | replace_file "$out/results.md"

# The plot: x is log(pairs) over the sizes, y is BLEU from 0 to the next multiple of 10 above the largest.
awk -F'\t' -v task="$task" -v budget="$budget_text" '
  function escape(text) { gsub(/&/, "\\&amp;", text); gsub(/</, "\\&lt;", text); gsub(/>/, "\\&gt;", text); return text }
  function x_of(pairs) { return xmax == xmin ? left + width / 2 : left + width * (log(pairs) - log(xmin)) / (log(xmax) - log(xmin)) }
  function y_of(bleu) { return top + height * (1 - bleu / ymax) }
  NR == 1 { next }
  {
    if (!($1 in seen_model)) { seen_model[$1] = 1; models[++model_count] = $1 }
    if (!($2 in seen_size)) { seen_size[$2] = 1; sizes[++size_count] = $2 + 0 }
    key = $1 SUBSEP ($2 + 0); bleu = $7 + 0
    if (!(key in count)) { lo[key] = bleu; hi[key] = bleu }
    count[key]++; sum[key] += bleu
    if (bleu < lo[key]) lo[key] = bleu; if (bleu > hi[key]) hi[key] = bleu
    if (bleu > best) best = bleu
  }
  END {
    split("#1f77b4 #d62728 #2ca02c #9467bd #ff7f0e #8c564b", colours, " ")
    left = 70; top = 40; width = 520; height = 300
    xmin = sizes[1]; xmax = sizes[1]
    for (i = 1; i <= size_count; ++i) { if (sizes[i] < xmin) xmin = sizes[i]; if (sizes[i] > xmax) xmax = sizes[i] }
    ymax = 10 * (int(best / 10) + 1); if (ymax > 100) ymax = 100
    printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", left + width + 190, top + height + 60
    printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
    printf "<text x=\"%d\" y=\"22\" font-size=\"14\">Test BLEU against training pairs: %s, %s per run</text>\n", left, escape(task), escape(budget)
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top + height, left + width, top + height
    printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", left, top, left, top + height
    for (i = 1; i <= size_count; ++i) {
      x = x_of(sizes[i])
      printf "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"black\"/>\n", x, top + height, x, top + height + 5
      printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x, top + height + 18, sizes[i]
    }
    printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">training pairs (log scale)</text>\n", left + width / 2, top + height + 40
    for (b = 0; b <= ymax; b += ymax / 5) {
      printf "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#dddddd\"/>\n", left, y_of(b), left + width, y_of(b)
      printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left - 6, y_of(b) + 4, b
    }
    printf "<text x=\"18\" y=\"%d\" transform=\"rotate(-90 18 %d)\" text-anchor=\"middle\">test BLEU</text>\n", top + height / 2, top + height / 2
    for (m = 1; m <= model_count; ++m) {
      colour = colours[(m - 1) % 6 + 1]; points = ""
      for (i = 1; i <= size_count; ++i) {
        key = models[m] SUBSEP sizes[i]
        if (!(key in count)) continue
        x = x_of(sizes[i]); points = points sprintf("%.1f,%.1f ", x, y_of(sum[key] / count[key]))
        printf "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", x, y_of(lo[key]), x, y_of(hi[key]), colour
        printf "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", x, y_of(sum[key] / count[key]), colour
      }
      sub(/ $/, "", points)
      printf "<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n", points, colour
      printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", left + width + 20, top + 20 * m, left + width + 40, top + 20 * m, colour
      printf "<text x=\"%d\" y=\"%d\">%s</text>\n", left + width + 46, top + 20 * m + 4, escape(models[m])
    }
    print "</svg>"
  }' "$out/results.tsv" | replace_file "$out/study.svg"

echo "study.sh: wrote $out/results.tsv, $out/results.md and $out/study.svg"
