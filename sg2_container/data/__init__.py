"""Dataset preparation (`sg2 prepare`): uploaded images -> the training zip. Torch-free."""
