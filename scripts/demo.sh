#!/usr/bin/env bash
# The whole CoCo DistillNet pipeline on the built-in synthetic data, through the MONAI bundle:
#   set-up -> teacher -> paraphrasers -> student without distillation -> CoCo-distilled student
#   -> evaluation of the three -> inference on the test tiles and on a synthetic slide
#   -> a results table and one PNG panel per test tile (image | truth | teacher | student | distilled).
#
#   bash scripts/demo.sh          # CPU-sized settings without CUDA (about 10 minutes on 2 cores),
#                                 # the paper's settings (256² tiles, batch 2, full FANet) with CUDA
#   bash scripts/demo.sh --full   # the paper's settings whatever the device
#
# Checkpoints go to bundle/models (teacher.pt, paraphraser.pt, student_none.pt, model.pt), scores to
# bundle/eval/demo, masks to bundle/outputs/demo; the synthetic data set to bundle/data/synthetic.
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
    MODE="paper-sized (256² tiles, batch 2, FANet features 64..512, Mobile U-Net x1.0)"
    PRESET=$CFG/demo_full.yaml
else
    MODE="CPU-sized (128² tiles, batch 4, FANet features 16..128, Mobile U-Net x1.0)"
    PRESET=$CFG/demo_cpu.yaml
    # one thread per process: on a shared 2-core machine more threads than free cores stall PyTorch
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
fi
configs() {  # configs STAGE.yaml: the --config_file list of a stage (base, the demo's preset, the stage)
    printf "['%s','%s','%s']" "$CFG/base.yaml" "$PRESET" "$CFG/$1"
}

EVAL=bundle/eval/demo
OUT=bundle/outputs/demo
STAGE=0
stage() {  # stage TITLE ARGS...: one `python -m monai.bundle` run, with a banner and the elapsed time
    local title="$1"
    shift
    STAGE=$((STAGE + 1))
    printf '\n=== [demo %d/9, %dm%02ds] %s\n' "$STAGE" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$title"
    "$PY" -m monai.bundle "$@"
}

echo "=== monai_coco demo: $MODE"
rm -f bundle/models/train_state_{teacher,paraphraser,student_none,model}.pt
rm -rf "$EVAL" "$OUT"

stage "teacher: FANet, cross-entropy" run training --config_file "$(configs train_teacher.yaml)"
stage "paraphrasers: reconstruct the frozen teacher's taps" run training \
    --config_file "$(configs train_paraphraser.yaml)"
stage "student without distillation (distill=none)" run training --config_file "$(configs train.yaml)" \
    --distill none --model_name student_none.pt
stage "student distilled: CE + CoCo (on paraphraser factors) + adversarial critic" run training \
    --config_file "$(configs train.yaml)" --distill coco
stage "evaluate the teacher on the test split" run evaluating --config_file "$(configs evaluate.yaml)" \
    --network_def @teacher_def --model_name teacher.pt --output_dir $EVAL/teacher
stage "evaluate the student without distillation" run evaluating --config_file "$(configs evaluate.yaml)" \
    --model_name student_none.pt --output_dir $EVAL/student_none
stage "evaluate the distilled student" run evaluating --config_file "$(configs evaluate.yaml)" \
    --model_name model.pt --output_dir $EVAL/student_coco
stage "inference: the test tiles, then a pyramidal slide at level 2 (2 µm/px)" run inference \
    --config_file "$(configs inference.yaml)" --output_dir $OUT/tiles
"$PY" -m monai.bundle run inference --config_file "$(configs inference.yaml)" \
    --dataset_dir bundle/data/synthetic/slide/gastric_slide.tif --level 2 --output_dir $OUT/slide

STAGE=$((STAGE + 1))
printf '\n=== [demo %d/9, %dm%02ds] results\n' "$STAGE" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60))
"$PY" scripts/demo_report.py --bundle-root bundle --eval-root $EVAL --out $EVAL \
    --configs $CFG/base.yaml "$PRESET" $CFG/evaluate.yaml
echo "[demo] masks and overlays: $OUT/tiles, $OUT/slide (gastric_slide_mask.tif, gastric_slide_overlay.png)"
printf '[demo] done in %dm%02ds (%s)\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$MODE"
