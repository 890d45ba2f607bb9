#!/bin/bash
# Run from the repository root after `cargo build --release`; prints one line per sweep and per set of lone runs.
# models·epochs/s of `gpu-train sweep` against lone runs, default job, E epochs (default 100), seeds 0..N-1.
# LAYOUT (auto, texels or buffer: where the GPU's models share dispatches), DEVS and NS choose
# what runs (defaults: auto, "0 cpu", "1 8 32 128").
export XDG_RUNTIME_DIR=/tmp
G=${G:-target/release/gpu-train}
E=${E:-100}
LAYOUT=${LAYOUT:-auto}
for dev in ${DEVS:-0 cpu}; do
  for n in ${NS:-1 8 32 128}; do
    seeds=$(seq -s, 0 $((n-1)))
    for rep in 1 2; do
      rm -rf /tmp/ms; $G sweep --device $dev --layout $LAYOUT --epochs $E --seed $seeds --out /tmp/ms --quiet > /dev/null
      python3 -c "import json;s=json.load(open('/tmp/ms/sweep.json'));print('sweep dev=$dev layout=$LAYOUT n=$n rep=$rep train_s=%.3f model_epochs_per_s=%.1f (%s)'%(s['train_s'],s['model_epochs_per_s'],s.get('batching')))"
      # lone runs: the first min(n,8) seeds, train_s summed and scaled to n
      m=$(( n < 8 ? n : 8 )); tot=0
      for s in $(seq 0 $((m-1))); do $G --device $dev --layout $LAYOUT --epochs $E --seed $s --quiet --summary-json /tmp/solo.json > /dev/null; t=$(python3 -c "import json;print(json.load(open('/tmp/solo.json'))['timings']['train_s'])"); tot=$(python3 -c "print($tot+$t)"); done
      python3 -c "print('solo dev=$dev layout=$LAYOUT n=$n rep=$rep runs=$m train_s_sum=%.3f model_epochs_per_s=%.1f'%($tot, $m*$E/$tot))"
    done
  done
done
