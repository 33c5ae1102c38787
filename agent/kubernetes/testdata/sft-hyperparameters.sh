set -eu
echo "mariner: training a LoRA adapter (5 epochs, batch size 8, learning rate 0.0001, 1 GPU)"
# sft.py loads a dataset directory: its splits are the files named train.json and test.json.
dataset="$(dirname "$MARINER_TRAINING_FILE")/dataset"
mkdir -p "$dataset"
ln -f "$MARINER_TRAINING_FILE" "$dataset/train.json"
ln -f "$MARINER_VALIDATION_FILE" "$dataset/test.json"
# LLMariner's later images name the script train.py (same flags, --method defaults to supervised).
trainer=./sft.py
[ -f "$trainer" ] || trainer=./train.py
accelerate launch \
  --mixed_precision=no \
  --num_processes=1 \
  --num_machines=1 \
  --num_cpu_threads_per_process=1 \
  --dynamo_backend=no \
  "$trainer" \
  --model="$MARINER_BASE_MODEL_DIR" \
  --dataset="$dataset" \
  --output="$MARINER_OUTPUT_DIR" \
  --per_device_train_batch_size=8 \
  --learning_rate=0.0001 \
  --num_train_epochs=5
echo "mariner: converting the LoRA adapter to GGML"
python ./convert-lora-to-ggml.py "$MARINER_OUTPUT_DIR"
curl -fsSL --retry 3 -X PUT --upload-file "$MARINER_OUTPUT_DIR/ggml-adapter-model.bin" "$(cat /mariner/urls/output-ggml-adapter-model.bin)"
