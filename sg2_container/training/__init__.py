"""Training: dataset reader, loop, checkpoints. Knows nothing of SageMaker."""
