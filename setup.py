"""Installs sg2-container.

setup.py (rather than pyproject alone) because a later step compiles the stylegan2_ops CUDA
extension ahead of time when SG2_BUILD_CUDA=1; without it the install is pure Python.
"""
from setuptools import find_packages, setup

TORCH_PIN = "torch==2.14.1"
TORCHVISION_PIN = "torchvision==0.29.1"

setup(
    name="sg2-container",
    version="0.1.0",
    description="StyleGAN2-ADA training and inference for Amazon SageMaker",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sg2_container", "sg2_container.*", "stylegan2_ops", "stylegan2_ops.*"]),
    package_data={"stylegan2_ops": ["csrc/*"]},
    install_requires=[
        TORCH_PIN,
        TORCHVISION_PIN,
        "numpy",
        "pillow",
        "scipy",
        "click",
        "ninja",
    ],
    extras_require={
        # The image installs sagemaker-training too; tests use it to run jobs the toolkit's way.
        "sagemaker": ["sagemaker-training==5.1.4"],
        "test": ["pytest", "pytest-xdist", "sagemaker-training==5.1.4"],
    },
    entry_points={
        "console_scripts": [
            "sg2=sg2_container.cli.main:cli",
            "sg2-sagemaker=sg2_container.sagemaker.entrypoint:main",
        ],
    },
)
