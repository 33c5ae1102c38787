set -eu
echo "mariner: training a LoRA adapter (3 epochs, batch size 4, learning rate 0.0002, 0 GPUs)"
accelerate launch \
  --num_processes=1 \
  --num_machines=1 \
  --cpu \
  --mixed_precision=no \
  --dynamo_backend=no \
  ./sft.py \
  --model="$MARINER_BASE_MODEL_DIR" \
  --dataset_path="$MARINER_TRAINING_FILE" \
  --output="$MARINER_OUTPUT_DIR" \
  --num_train_epochs=3 \
  --per_device_train_batch_size=4 \
  --learning_rate=0.0002 \
  --seed=42
echo "mariner: converting the LoRA adapter to GGML"
python3 ./convert-lora-to-ggml.py "$MARINER_OUTPUT_DIR"
curl -fsSL --retry 3 -X PUT --upload-file "$MARINER_OUTPUT_DIR/ggml-adapter-model.bin" "$(cat /mariner/urls/output-ggml-adapter-model.bin)"
