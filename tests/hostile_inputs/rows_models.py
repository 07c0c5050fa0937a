"""Model files (ours and reference pickles) whose kwargs would build absurd networks."""
import torch

from sg2_container.models import files
from tests.hostile_inputs.table import Row, user_error
from tests.models import refpickle_helpers as helpers

TINY_G = dict(z_dim=8, c_dim=0, w_dim=16, img_resolution=8, img_channels=3,
              mapping_kwargs=dict(num_layers=2),
              synthesis_kwargs=dict(channel_base=64, channel_max=16))


def _model_file(tmp_path, **changes):
    """A .pt of a few bytes whose G_kwargs say what `changes` says (dotted keys nest)."""
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY_G.items()}
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = kwargs
        for parent in parents:
            node = node.setdefault(parent, {})
        node[key] = value
    path = tmp_path / "model.pt"
    torch.save({"format": "sg2-model", "format_version": 1, "G_kwargs": kwargs, "G_ema": {}},
               path)
    return user_error(files.load_model, path)


def _reference_pickle(tmp_path):
    kwargs = dict(TINY_G, img_resolution=2**20)
    tree = helpers.record_tree({}, "Generator", kwargs, "raise SystemExit('never run')\n")
    path = tmp_path / "network-snapshot-000000.pkl"
    helpers.write_reference_pickle(path, {"G": tree, "G_ema": tree})
    return user_error(files.load_model, path)


ROWS = [
    Row("model-resolution-huge", "model file with `img_resolution` 2^20",
        "G_ema img_resolution = 1048576 is out of bounds: expected a power of two from 4 to 4096",
        lambda tmp: _model_file(tmp, img_resolution=2**20)),
    Row("model-resolution-not-pow2", "model file with `img_resolution` 48",
        "G_ema img_resolution = 48 is out of bounds",
        lambda tmp: _model_file(tmp, img_resolution=48)),
    Row("model-z-dim-huge", "model file with `z_dim` 10^6",
        "G_ema z_dim = 1000000 is out of bounds: expected an integer from 0 to 4096",
        lambda tmp: _model_file(tmp, z_dim=10**6)),
    Row("model-c-dim-huge", "model file with `c_dim` 2^40",
        "G_ema c_dim = 1099511627776 is out of bounds: expected an integer from 0 to 32768",
        lambda tmp: _model_file(tmp, c_dim=2**40)),
    Row("model-channel-max-huge", "model file with `synthesis_kwargs.channel_max` 10^6",
        "G_ema synthesis_kwargs.channel_max = 1000000 is out of bounds",
        lambda tmp: _model_file(tmp, synthesis_kwargs__channel_max=10**6)),
    Row("model-mapping-layers-huge", "model file with `mapping_kwargs.num_layers` 10^5",
        "G_ema mapping_kwargs.num_layers = 100000 is out of bounds: expected an integer from 1 "
        "to 64", lambda tmp: _model_file(tmp, mapping_kwargs__num_layers=10**5)),
    Row("model-kwarg-not-int", "model file with `w_dim` 16.5",
        "G_ema w_dim = 16.5 is out of bounds",
        lambda tmp: _model_file(tmp, w_dim=16.5)),
    Row("model-conv-clamp-nan", "model file with `synthesis_kwargs.conv_clamp` NaN",
        "synthesis_kwargs.conv_clamp = nan is out of bounds: expected a finite number > 0",
        lambda tmp: _model_file(tmp, synthesis_kwargs__conv_clamp=float("nan"))),
    Row("pickle-resolution-huge", "reference pickle whose G `_init_kwargs` ask for 2^20 px",
        "G img_resolution = 1048576 is out of bounds", _reference_pickle),
]
