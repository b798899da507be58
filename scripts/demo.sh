#!/usr/bin/env bash
# The whole CoCo DistillNet pipeline on the built-in fine-structure synthetic data (histology.yaml), through
# the MONAI bundle, in the regime distillation is for (a few annotated tiles, many unannotated ones):
#   set-up -> teacher (every annotated tile) -> paraphrasers -> on 16 annotated tiles: student alone,
#   CoCo-distilled student, KD-distilled student with 1024 unannotated tiles -> evaluation of the four on
#   test slides never seen in training -> inference on the test tiles -> a results table and panels.
#
#   bash scripts/demo.sh          # CPU-sized settings without CUDA (demo_cpu.yaml),
#                                 # the paper's networks at 256² (demo_full.yaml) with CUDA
#   bash scripts/demo.sh --full   # the paper's settings whatever the device
#
# Checkpoints go to bundle/models (teacher.pt, paraphraser.pt, student_none.pt, student_coco.pt, and model.pt:
# the recommended recipe's student, the one inference uses), scores to bundle/eval/demo, masks to bundle/outputs/demo; the data set to
# bundle/data/histology.
# A rerun starts the training stages afresh (their resumable training states are removed first).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

FULL=0
for arg in "$@"; do
    case "$arg" in
        --full) FULL=1 ;;
        -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "demo.sh: unknown argument '$arg' (expected --full or --help)" >&2; exit 2 ;;
    esac
done

START=$SECONDS
bash "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
PY=.venv/bin/python
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning}"  # MONAI warns about eval() in every config

if [ "$FULL" = 0 ] && "$PY" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    FULL=1
fi
CFG=bundle/configs
if [ "$FULL" = 1 ]; then
    MODE="paper-sized (256² tiles, batch 2, FANet 38 M, Mobile U-Net 4.6 M)"
    PRESETS=("$CFG/demo_full.yaml")
    TEACHER_EPOCHS=40
else
    MODE="CPU-sized (64² tiles, batch 8, FANet 5.4 M, Mobile U-Net x0.25 0.77 M)"
    PRESETS=("$CFG/cpu.yaml" "$CFG/demo_cpu.yaml")
    TEACHER_EPOCHS=30
    # one thread per process: on a shared 2-core machine more threads than free cores stall PyTorch
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
configs() {  # configs STAGE.yaml: the --config_file list of a stage (base, the data, the demo's presets, the stage)
    local files=("$CFG/base.yaml" "$CFG/histology.yaml" "${PRESETS[@]}" "$CFG/$1")
    printf "['%s'" "${files[0]}"
    printf ",'%s'" "${files[@]:1}"
    printf "]"
}
# glibc malloc: keep large buffers mapped instead of returning them to the kernel after each window batch
# (their page faults cost a slide job much of its CPU time). Set where the process starts.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1073741824}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"
FEW=(--n_labelled 16)   # the students learn from 16 annotated tiles (2 slides); the teacher from all 96
POOL=bundle/data/histology/unlabelled

EVAL=bundle/eval/demo
OUT=bundle/outputs/demo
STAGE=0
stage() {  # stage TITLE ARGS...: one `python -m monai.bundle` run, with a banner and the elapsed time
    local title="$1"
    shift
    STAGE=$((STAGE + 1))
    printf '\n=== [demo %d/11, %dm%02ds] %s\n' "$STAGE" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$title"
    "$PY" -m monai.bundle "$@"
}

echo "=== monai_coco demo: $MODE"
rm -f bundle/models/train_state_{teacher,paraphraser,student_none,student_coco,model}.pt
rm -rf "$EVAL" "$OUT"

stage "teacher: FANet, cross-entropy, every annotated tile" run training \
    --config_file "$(configs train_teacher.yaml)" --epochs $TEACHER_EPOCHS
stage "paraphrasers: reconstruct the frozen teacher's taps" run training \
    --config_file "$(configs train_paraphraser.yaml)"
stage "student alone (distill=none), 16 annotated tiles" run training --config_file "$(configs train.yaml)" \
    "${FEW[@]}" --distill none --model_name student_none.pt
stage "student distilled: CE + CoCo (paraphraser factors) + adversarial critic, 16 annotated tiles" \
    run training --config_file "$(configs train.yaml)" "${FEW[@]}" --distill coco --lambda_adv 0.1 \
    --model_name student_coco.pt
# the bundle's default (KD, no critic) with the pool, at the pool-size curve's budget
# (bundle/docs/benchmarks_pool_curve.md): epochs of 10 iterations, whatever the pool
stage "the recommended recipe: KD, 16 annotated tiles plus 1024 unannotated ones (README: Which recipe to run)" \
    run training --config_file "$(configs train.yaml)" "${FEW[@]}" --unlabelled_dir $POOL \
    --train#trainer#epoch_length 10 --iterations '$@epochs * 10'
stage "evaluate the teacher on the test slides" run evaluating --config_file "$(configs evaluate.yaml)" \
    --network_def @teacher_def --model_name teacher.pt --output_dir $EVAL/teacher
for run in "student_none student_none.pt" "student_coco student_coco.pt" "student_unlabelled model.pt"; do
    set -- $run
    stage "evaluate $1 on the test slides" run evaluating --config_file "$(configs evaluate.yaml)" \
        --model_name "$2" --output_dir "$EVAL/$1"
done
stage "inference: the test tiles (masks, overlays, QuPath GeoJSON, summaries)" run inference \
    --config_file "$(configs inference.yaml)" --dataset_dir bundle/data/histology/test \
    --image_suffixes "['.jpg']" --output_dir $OUT/tiles

STAGE=$((STAGE + 1))
printf '\n=== [demo %d/11, %dm%02ds] results\n' "$STAGE" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60))
"$PY" scripts/demo_report.py --bundle-root bundle --eval-root $EVAL --out $EVAL \
    --configs $CFG/base.yaml $CFG/histology.yaml "${PRESETS[@]}" $CFG/evaluate.yaml
echo "[demo] masks, overlays, GeoJSON and summaries: $OUT/tiles"
printf '[demo] done in %dm%02ds (%s)\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$MODE"
