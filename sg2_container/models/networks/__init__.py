"""StyleGAN2-ADA networks, weight-compatible with the reference implementation.

State-dict names, shapes and constructor kwargs equal the reference's, so published pickles
load without translation tables (see sg2_container.models.reference_pickle).
"""
from sg2_container.models.networks.discriminator import (
    Discriminator,
    DiscriminatorBlock,
    DiscriminatorEpilogue,
    MinibatchStdLayer,
)
from sg2_container.models.networks.generator import Generator
from sg2_container.models.networks.layers import (
    Conv2dLayer,
    FullyConnectedLayer,
    modulated_conv2d,
    normalize_2nd_moment,
)
from sg2_container.models.networks.mapping import MappingNetwork
from sg2_container.models.networks.synthesis import (
    SynthesisBlock,
    SynthesisLayer,
    SynthesisNetwork,
    ToRGBLayer,
)

__all__ = [
    "Conv2dLayer",
    "Discriminator",
    "DiscriminatorBlock",
    "DiscriminatorEpilogue",
    "FullyConnectedLayer",
    "Generator",
    "MappingNetwork",
    "MinibatchStdLayer",
    "SynthesisBlock",
    "SynthesisLayer",
    "SynthesisNetwork",
    "ToRGBLayer",
    "modulated_conv2d",
    "normalize_2nd_moment",
]
