#!/usr/bin/env bash
# The train/h4096-b64 trajectory on the GPU against the CPU's, to tell a kernel fault from the
# wider net's own sensitivity to rounding (benches/README.md): the GPU in each layout and with
# the plan of a CPU adapter (no split-K, other blocks), the CPU on 16 threads and on 1 (its own summation orders
# differ: the control). One CSV into $OUT, its columns in the order of the runs. Run on the GPU
# machine after ../shared/device/prepare.sh, with .device/ carried: `bash
# benches/h4096_trajectories.sh` (B=path/to/gpu-train elsewhere).
set -u
export XDG_RUNTIME_DIR=/tmp
B=${B:-.device/gpu-train}
real_gpu() { $B devices 2>/dev/null | grep -q 'DiscreteGpu\|IntegratedGpu'; }
if ! real_gpu; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
F="--layers 1000,4096,10 --lr 2.4414061883248905e-08 --epochs 500 --quiet"
d=$(mktemp -d)
run() { local name=$1 s=$SECONDS; shift; echo "== $name: $*"; timeout 120 "$@" $F --history "$d/$name.csv"; echo "== rc=$? in $((SECONDS - s))s"; }
run gpu-buffer $B --device gpu --layout buffer
run gpu-texels $B --device gpu --layout texels
run gpu-buffer-cpuplan env GPU_TRAIN_PLAN_AS=cpu $B --device gpu --layout buffer
run cpu16 $B --device cpu
run cpu1 env GPU_TRAIN_CPU_THREADS=1 $B --device cpu
cd "$d" && paste -d, gpu-buffer.csv gpu-texels.csv gpu-buffer-cpuplan.csv cpu16.csv cpu1.csv > "$OUT/h4096.csv"
head -3 "$OUT/h4096.csv"; tail -2 "$OUT/h4096.csv"
