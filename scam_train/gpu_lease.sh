#!/usr/bin/env bash
# One call on a lent GPU: continue the default model and train two variants from scratch side
# by side, pick one on ccp-val-a, and leave what comes back in OUT_DIR (at most 8 files of 16 MiB).
#
#   bash scam_train/gpu_lease.sh MINUTES PACKS OUT_DIR
#
# PACKS holds ccp-train.npz and ccp-val-a.npz (`scam-train pack`, see docs/model-card.md, "Training
# on a lent GPU"); models/default_model.pt is where this commit keeps it. All runs use version 6's
# objective: the squared error with person pixels weighted 4 and zoom-in up to 1.3x (not its
# parser-labelled photos: their 21.9 MB pack does not fit beside the checkpoint in the 64 MiB a
# call sends). First, alone on the card, one after the other:
#   probe-bN     from the shipped checkpoint, batch N for each N of PROBE_BATCHES (default
#                "32 128"), PROBE_MINUTES each (default 0.5): how fast one run trains on this
#                GPU (the first call's 190 images/s were three runs sharing it) and whether a
#                larger batch is faster per image (a step of about 10,700 operations forward and
#                backward, docs/performance.md: launching them may take longer than running them)
# then side by side, each MINUTES:
#   recon        reconstruction only, from the shipped checkpoint
#   scratch      from random weights (is continuing worth it?)
#   scratch-pw1  from random weights, person pixels weighted 1 (does the weight matter from scratch?)
# (The first call compared reconstruction then GAN: it cost 0.35 dB, docs/model-card.md.)
# Each is evaluated on ccp-val-a (model canvas), one after the other (in the first call,
# started three at once, none had written its report when the call's time ran out, about
# 100 s after the trainings ended; why was not found). Printed: each run's median images/s
# and person-region PSNR. Back come runs.tar.gz (every run's config, log, samples, report)
# and, split into 15 MB parts, the slimmed checkpoint (EMA + discriminator, fp16) of the
# best variant by person-region PSNR: one checkpoint, since what comes back is at most
# 64 MiB in all. Join the parts with `cat BEST.pt.part* > BEST.pt`.
#
# Runs here too: on the CPU with a few seconds a run it is the test of this script
# (tests/test_train_pack.py).
set -euo pipefail
minutes=$1 packs=$2 out=$3
runs=${RUNS:-$(mktemp -d)}
batch=${BATCH:-32} workers=${WORKERS:-2} device=${DEVICE:-auto}
py=${PYTHON:-python3}
mkdir -p "$out"

common=(--data "$packs/ccp-train.npz" --height 128 --width 85 --model gen_blocks=5 --model gen_nf=32
        --perceptual-weight 0 --batch-size "$batch" --ema 0.999 --workers "$workers" --lr 3e-4
        --lr-schedule cosine --warmup-steps 100 --person-weight 4 --progress none --log-every "${LOG_EVERY:-25}"
        --sample-every 1000 --checkpoint-every 1000 --device "$device" --reconstruction mse --zoom 0.3)
variants=(recon scratch scratch-pw1)

fit() { "$py" -m scam_train fit "${common[@]}" "$@" >/dev/null || echo "fit $*: failed" >&2; }
for b in ${PROBE_BATCHES:-32 128}; do
  fit --out "$runs/probe-b$b" --init models/default_model.pt --adversarial-weight 0 --batch-size "$b" \
    --max-minutes "${PROBE_MINUTES:-0.5}"
done
fit --out "$runs/recon" --init models/default_model.pt --adversarial-weight 0 --max-minutes "$minutes" &
fit --out "$runs/scratch" --adversarial-weight 0 --max-minutes "$minutes" &
fit --out "$runs/scratch-pw1" --adversarial-weight 0 --person-weight 1 --max-minutes "$minutes" &
wait

for run in "${variants[@]}"; do
  if [ -f "$runs/$run/last.pt" ]; then
    "$py" -m scam_train evaluate --ckpt "$runs/$run/last.pt" --data "$packs/ccp-val-a.npz" --no-fid \
      -o "$runs/$run/eval_a.json" --grid "$runs/$run/eval_a.png" >/dev/null 2>&1 || echo "evaluate $run: failed" >&2
  fi
done

best=$("$py" - "$runs" "${variants[@]}" <<'EOF'
import json, sys
from pathlib import Path
from statistics import median
runs, variants = Path(sys.argv[1]), sys.argv[2:]
for log in sorted(runs.glob("*/log.jsonl")):  # the probes and the variants
    rates = [json.loads(line)["images_per_s"] for line in log.read_text().splitlines()]
    if rates:  # none when a run ended before its first log line
        print(f"{log.parent.name}: {median(rates[1:] or rates):.1f} images/s (median of {len(rates)} log lines)",
              file=sys.stderr)
score = {r: json.loads((runs / r / "eval_a.json").read_text())["person_psnr_db"]
         for r in variants if (runs / r / "eval_a.json").is_file()}
for r, s in score.items():
    print(f"{r}: ccp-val-a person PSNR {s} dB", file=sys.stderr)
print(max(score, key=score.get))
EOF
)
"$py" -m scam_train slim --ckpt "$runs/$best/last.pt" -o "$runs/$best.pt" >/dev/null
split -b 15000000 -d "$runs/$best.pt" "$out/$best.pt.part"
tar -czf "$out/runs.tar.gz" -C "$runs" --exclude='*.pt' --exclude=tb .
echo "best on ccp-val-a: $best; back in $out: $(ls "$out" | tr '\n' ' ')"
