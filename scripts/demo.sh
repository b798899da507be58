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
if [ "$FULL" = 1 ]; then
    MODE="paper-sized (256² tiles, batch 2, FANet features 64..512, Mobile U-Net x1.0)"
    DATA=()                      # the bundle's defaults: 160/32/32 synthetic tiles of 256², batch 2
    LOADER=()
    TEACHER=()
    CRITIC=()
    EPOCHS_TEACHER=40 EPOCHS_PARAPHRASER=10 EPOCHS_STUDENT=40
    PARAPHRASER_OPT=()
    LOG=(--log_interval 40)
else
    MODE="CPU-sized (128² tiles, batch 4, FANet features 16..128, Mobile U-Net x1.0)"
    # one thread per process: on a shared 2-core machine more threads than free cores stall PyTorch
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    DATA=(--roi_size "[128,128]" --synthetic#n_train 48 --synthetic#n_val 12 --synthetic#n_test 12)
    LOADER=(--batch_size 4 --num_workers 0)
    TEACHER=(--teacher_def#features "[16,32,64,128]")
    CRITIC=(--critic_def#channels "[16,32,64,128]")
    EPOCHS_TEACHER=12 EPOCHS_PARAPHRASER=2 EPOCHS_STUDENT=12
    # Adam instead of the paper's SGD at 3e-4, which needs far more than the demo's few dozen iterations
    PARAPHRASER_OPT=(--optimizer "{'_target_': 'torch.optim.Adam', 'params': '\$@network.parameters()', 'lr': 0.001}")
    LOG=(--log_interval 6)
fi

CFG=bundle/configs
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

stage "teacher: FANet, cross-entropy" run training --config_file $CFG/train_teacher.yaml \
    "${DATA[@]}" "${LOADER[@]}" "${TEACHER[@]}" "${LOG[@]}" --epochs $EPOCHS_TEACHER
stage "paraphrasers: reconstruct the frozen teacher's taps" run training \
    --config_file $CFG/train_paraphraser.yaml "${DATA[@]}" "${LOADER[@]}" "${TEACHER[@]}" "${LOG[@]}" \
    "${PARAPHRASER_OPT[@]}" --epochs $EPOCHS_PARAPHRASER
stage "student without distillation (distill=none)" run training --config_file $CFG/train.yaml \
    "${DATA[@]}" "${LOADER[@]}" "${TEACHER[@]}" "${LOG[@]}" --epochs $EPOCHS_STUDENT \
    --distill none --model_name student_none.pt
stage "student distilled: CE + CoCo (on paraphraser factors) + adversarial critic" run training \
    --config_file $CFG/train.yaml "${DATA[@]}" "${LOADER[@]}" "${TEACHER[@]}" "${CRITIC[@]}" "${LOG[@]}" \
    --epochs $EPOCHS_STUDENT --distill coco
stage "evaluate the teacher on the test split" run evaluating --config_file $CFG/evaluate.yaml \
    "${DATA[@]}" "${LOADER[@]}" "${TEACHER[@]}" --network_def @teacher_def --model_name teacher.pt \
    --output_dir $EVAL/teacher
stage "evaluate the student without distillation" run evaluating --config_file $CFG/evaluate.yaml \
    "${DATA[@]}" "${LOADER[@]}" --model_name student_none.pt --output_dir $EVAL/student_none
stage "evaluate the distilled student" run evaluating --config_file $CFG/evaluate.yaml \
    "${DATA[@]}" "${LOADER[@]}" --model_name model.pt --output_dir $EVAL/student_coco
stage "inference: the test tiles, then a pyramidal slide at level 2 (2 µm/px)" run inference \
    --config_file $CFG/inference.yaml "${DATA[@]}" --output_dir $OUT/tiles
"$PY" -m monai.bundle run inference --config_file $CFG/inference.yaml "${DATA[@]}" \
    --dataset_dir bundle/data/synthetic/slide/gastric_slide.tif --level 2 --output_dir $OUT/slide

STAGE=$((STAGE + 1))
printf '\n=== [demo %d/9, %dm%02ds] results\n' "$STAGE" $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60))
"$PY" scripts/demo_report.py --bundle-root bundle --eval-root $EVAL --out $EVAL -- \
    "${DATA[@]}" "${TEACHER[@]}"
echo "[demo] masks and overlays: $OUT/tiles, $OUT/slide (gastric_slide_mask.tif, gastric_slide_overlay.png)"
printf '[demo] done in %dm%02ds (%s)\n' $(((SECONDS - START) / 60)) $(((SECONDS - START) % 60)) "$MODE"
