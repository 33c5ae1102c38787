set -eu
echo "mariner: training a LoRA adapter (5 epochs, batch size 8, learning rate 0.0001, 1 GPU)"
accelerate launch \
  --num_processes=1 \
  --num_machines=1 \
  --mixed_precision=no \
  --dynamo_backend=no \
  ./sft.py \
  --model="$MARINER_BASE_MODEL_DIR" \
  --dataset_path="$MARINER_TRAINING_FILE" \
  --val_dataset_path="$MARINER_VALIDATION_FILE" \
  --output="$MARINER_OUTPUT_DIR" \
  --num_train_epochs=5 \
  --per_device_train_batch_size=8 \
  --learning_rate=0.0001 \
  --seed=1234
echo "mariner: converting the LoRA adapter to GGML"
python3 ./convert-lora-to-ggml.py "$MARINER_OUTPUT_DIR"
curl -fsSL --retry 3 -X PUT --upload-file "$MARINER_OUTPUT_DIR/ggml-adapter-model.bin" "$(cat /mariner/urls/output-ggml-adapter-model.bin)"
