"""The largest network sizes anything accepts: options, model files, dataset headers and labels.

One definition on the ground floor, so the option schema (cbase, cmax, map, freezed) refuses at
start what models/bounds.py would refuse when the trained model is saved or loaded. The values
are far above any published StyleGAN2 model (1024 px, 512 channels, 8 mapping layers, 512-d
latents) and far below what would exhaust a training instance.
"""

MAX_RESOLUTION = 4096  # img_resolution; also the largest training image side
MAX_LATENT_DIM = 4096  # z_dim, w_dim, cmap_dim, mapping embed/layer features
MAX_CLASSES = 32768  # c_dim: label width, so also class indices and label vector length
MAX_IMG_CHANNELS = 4
MAX_CHANNEL_MAX = 2048  # channels of any layer
MAX_CHANNEL_BASE = 2**20
MAX_MAPPING_LAYERS = 64
MAX_FP16_RES = 16
MAX_MBSTD_GROUP = 1024
MAX_MBSTD_CHANNELS = 64
MAX_FREEZE_LAYERS = 1024
MAX_SEED = 2**32 - 1  # numpy's RandomState takes 32-bit seeds (data order, subsets, latents)
