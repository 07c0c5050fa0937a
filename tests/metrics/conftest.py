"""A randomly initialised Inception-v3 detector (the real architecture, saved as a plain state
dict exactly like the published weights), a tiny generator file and a tiny dataset."""
import io

import pytest
import torch

from sg2_container.data.synthetic import write_synthetic_dataset


def random_inception_state() -> dict:
    """torch-fidelity's Inception-v3 with random weights (He-initialised convolutions, so the
    features neither vanish nor explode through the 94 layers)."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, *args, **kwargs):  # keep the random initialisation
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    torch.manual_seed(0)
    module = Unloaded("random", ["2048"], feature_extractor_weights_path=empty)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture(scope="session")
def detector_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("detector") / "inception-random.pth"
    torch.save(random_inception_state(), path)
    return path


@pytest.fixture(scope="session")
def metric_data(tmp_path_factory):
    return write_synthetic_dataset(tmp_path_factory.mktemp("mdata") / "shapes.zip", count=6,
                                   resolution=16)


@pytest.fixture(scope="session")
def network_file(tmp_path_factory):
    from sg2_container.models.files import save_model
    from sg2_container.models.networks import Generator

    torch.manual_seed(1)
    G = Generator(z_dim=8, w_dim=8, c_dim=0, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8, num_fp16_res=0))
    return save_model(tmp_path_factory.mktemp("net") / "tiny.pt", G_ema=G.eval())
