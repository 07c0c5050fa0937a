"""Training learns: a short CPU run moves generated image statistics towards the data's."""
import numpy as np
import torch

from sg2_container.data.dataset import ImageFolderDataset
from sg2_container.data.synthetic import write_synthetic_dataset
from sg2_container.models.files import load_model
from sg2_container.models.networks import Generator
from sg2_container.options import TrainingOptions
from sg2_container.training.loop import train


def image_statistics(images: torch.Tensor) -> torch.Tensor:
    """Mean image at 4x4 (colour layout) and per-channel spread across samples."""
    coarse = torch.nn.functional.avg_pool2d(images, images.shape[-1] // 4)
    return torch.cat([coarse.mean(dim=0).flatten(), images.std(dim=0).mean(dim=[1, 2])])


def test_short_run_moves_generated_statistics_to_the_data(tmp_path):
    data = write_synthetic_dataset(tmp_path / "shapes.zip", count=64, resolution=16)
    options = TrainingOptions(data=str(data), outdir=str(tmp_path / "run"), cfg="auto", kimg=0.4,
                              batch=8, cbase=256, cmax=32, map=2, workers=0, snap=100,
                              kimg_per_tick=0.2, aug="noaug", seed=0, device="cpu")
    train(options)

    dataset = ImageFolderDataset(str(data))
    reals = torch.from_numpy(np.stack([dataset[i][0] for i in range(len(dataset))])).float() / 127.5 - 1
    target = image_statistics(reals)
    trained = load_model(tmp_path / "run" / "network-final.pt").G_ema
    torch.manual_seed(options.seed)  # the run's initial weights
    untrained = Generator(**trained.init_kwargs).eval()
    z = torch.randn([256, trained.z_dim], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = (image_statistics(untrained(z, None, noise_mode="const")) - target).norm()
        after = (image_statistics(trained(z, None, noise_mode="const")) - target).norm()
    assert after < 0.3 * before, (float(before), float(after))
