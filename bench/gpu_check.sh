#!/bin/sh
# Issue 26's device check as one command on a lent GPU machine, from the repository root, with
# work/gpu-site.tar.xz (`make gpu-bundle`) carried there:
#
#   sh bench/gpu_check.sh                                    # fine-tune input, fine-tune, embed
#   STAGES=pretrain,pretrain_compile sh bench/gpu_check.sh   # the job with and without compile
#   STAGES=augment,floor,feed,compile sh bench/gpu_check.sh  # the rest, if device time is left
#
# Unpacks the bundle once per machine, names the GPU, and runs bench/bench_gpu_feed.py with its
# result file in $OUT (the device tool's folder that comes back, even from a run cut off by its
# time limit: the benchmark rewrites the file after every stage). The stages run in the
# benchmark's own order; finetune and embed use a randomly initialised encoder when pretrain
# and finetune did not run before them (throughput does not depend on the weights). With
# `augment` among the stages, each augmentation op is also timed alone on the GPU at batch 256
# (bench/bench_augment_ops.py, into $OUT/augment_ops-cuda.txt).
set -eu
SITE=/tmp/echoseek-site
if [ ! -f "$SITE/.unpacked" ]; then
  mkdir -p "$SITE" && tar xJf work/gpu-site.tar.xz -C "$SITE" && touch "$SITE/.unpacked"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH="$SITE:$PWD" python3 bench/bench_gpu_feed.py --device cuda \
  --stages "${STAGES:-input,finetune,embed}" --results "${OUT:-bench/results}" \
  --tag "${TAG:-check}"
case ",${STAGES:-}," in
  *,augment,*)
    PYTHONPATH="$SITE:$PWD" python3 bench/bench_augment_ops.py --device cuda --batch 256 \
      | tee "${OUT:-bench/results}/augment_ops-cuda.txt" ;;
esac
