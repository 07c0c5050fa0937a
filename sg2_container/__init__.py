"""sg2-container: StyleGAN2-ADA training and inference, shaped for Amazon SageMaker."""

__version__ = "0.1.0"
