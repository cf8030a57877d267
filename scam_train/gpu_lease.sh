#!/usr/bin/env bash
# One call on a lent GPU: continue the default model in three variants side by side, pick one
# on ccp-val-a, and leave what comes back in OUT_DIR (at most 8 files of 16 MiB).
#
#   bash scam_train/gpu_lease.sh MINUTES PACKS OUT_DIR
#
# PACKS holds ccp-train.npz and ccp-val-a.npz (`scam-train pack`, see docs/model-card.md, "Training
# on a lent GPU"); models/default_model.pt is where this commit keeps it. The variants, each
# from the shipped checkpoint unless said, all with version 5's objective: the squared error
# with person pixels weighted 4 and zoom-in up to 1.3x (not its parser-labelled photos: their
# 21.9 MB pack does not fit beside the checkpoint in the 64 MiB a call sends):
#   recon       reconstruction only, MINUTES
#   recon-gan   reconstruction for 5/8 of MINUTES, then the GAN terms (hinge + feature
#               matching) from its EMA weights for the rest
#   scratch     reconstruction only from random weights, MINUTES (is continuing worth it?)
# Each is evaluated on ccp-val-a (model canvas), one after the other (in the first call,
# started three at once, none had written its report when the call's time ran out, about
# 100 s after the trainings ended; why was not found). Back come
# runs.tar.gz (every variant's config, log, samples, report) and, split into 15 MB parts,
# the slimmed checkpoint (EMA + discriminator, fp16) of the best variant by person-region
# PSNR: one checkpoint, since what comes back is at most 64 MiB in all. Join the parts with
# `cat BEST.pt.part* > BEST.pt`.
#
# Runs here too: on the CPU with MINUTES=1 it is the test of this script (tests/test_train_fit.py).
set -euo pipefail
minutes=$1 packs=$2 out=$3
runs=${RUNS:-$(mktemp -d)}
batch=${BATCH:-32} workers=${WORKERS:-2} device=${DEVICE:-auto}
py=${PYTHON:-python3}
mkdir -p "$out"

common=(--data "$packs/ccp-train.npz" --height 128 --width 85 --model gen_blocks=5 --model gen_nf=32
        --perceptual-weight 0 --batch-size "$batch" --ema 0.999 --workers "$workers" --lr 3e-4
        --lr-schedule cosine --warmup-steps 100 --person-weight 4 --progress none --log-every 25
        --sample-every 1000 --checkpoint-every 1000 --device "$device" --reconstruction mse --zoom 0.3)
first=$("$py" -c "print(round($minutes * 5 / 8, 3))")
second=$("$py" -c "print(round($minutes * 3 / 8, 3))")

fit() { "$py" -m scam_train fit "${common[@]}" "$@" >/dev/null || echo "fit $*: failed" >&2; }
fit --out "$runs/recon" --init models/default_model.pt --adversarial-weight 0 --max-minutes "$minutes" &
( fit --out "$runs/recon-gan.1" --init models/default_model.pt --adversarial-weight 0 --max-minutes "$first" &&
  fit --out "$runs/recon-gan" --init "$runs/recon-gan.1/last.pt" --max-minutes "$second" ) &
fit --out "$runs/scratch" --adversarial-weight 0 --max-minutes "$minutes" &
wait

for run in recon recon-gan scratch; do
  if [ -f "$runs/$run/last.pt" ]; then
    "$py" -m scam_train evaluate --ckpt "$runs/$run/last.pt" --data "$packs/ccp-val-a.npz" --no-fid \
      -o "$runs/$run/eval_a.json" --grid "$runs/$run/eval_a.png" >/dev/null 2>&1 || echo "evaluate $run: failed" >&2
  fi
done

best=$("$py" - "$runs" <<'EOF'
import json, sys
from pathlib import Path
runs = Path(sys.argv[1])
score = {r: json.loads((runs / r / "eval_a.json").read_text())["person_psnr_db"]
         for r in ("recon", "recon-gan", "scratch") if (runs / r / "eval_a.json").is_file()}
for r, s in score.items():
    print(f"{r}: ccp-val-a person PSNR {s} dB", file=sys.stderr)
print(max(score, key=score.get))
EOF
)
"$py" -m scam_train slim --ckpt "$runs/$best/last.pt" -o "$runs/$best.pt" >/dev/null
split -b 15000000 -d "$runs/$best.pt" "$out/$best.pt.part"
tar -czf "$out/runs.tar.gz" -C "$runs" --exclude='*.pt' --exclude=tb .
echo "best on ccp-val-a: $best; back in $out: $(ls "$out" | tr '\n' ' ')"
