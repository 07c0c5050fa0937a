"""Our model file: round trip, loadable with weights_only, clear errors, atomic writes."""
import os
import zipfile

import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.models import files
from sg2_container.models.networks import Discriminator, Generator


def _nets(golden):
    G = Generator(**golden["G_kwargs"])
    G.load_state_dict(golden["G_state_dict"])
    D = Discriminator(**golden["D_kwargs"])
    D.load_state_dict(golden["D_state_dict"])
    return G.eval(), D.eval()


def _image(G, golden):
    inputs = golden["inputs"]
    with torch.no_grad():
        return G(inputs["z"], inputs["c"], truncation_psi=0.7, noise_mode="const")


@pytest.fixture
def model_file(golden_tiny, tmp_path):
    G, D = _nets(golden_tiny)
    return files.save_model(tmp_path / "model.pt", G_ema=G, G=G, D=D,
                            metadata={"kimg": 12, "options": {"cfg": "auto", "gamma": 0.5}})


def _rewrite(path, change):
    """Loads our payload (safely), lets `change` edit it, writes it back with torch.save."""
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)


def test_round_trip_matches_golden_outputs(model_file, golden_tiny):
    raw = torch.load(model_file, weights_only=True)
    assert raw["format"] == "sg2-model" and raw["format_version"] == files.FORMAT_VERSION
    assert raw["G_kwargs"] == golden_tiny["G_kwargs"]
    assert set(raw) >= {"G", "D", "G_ema", "G_kwargs", "D_kwargs", "metadata"}
    assert list(raw["G_ema"]) == list(golden_tiny["G_state_dict"])

    bundle = files.load_model(model_file)
    assert bundle.format_version == 1 and bundle.source_kind == "sg2-model"
    assert bundle.metadata == {"kimg": 12, "options": {"cfg": "auto", "gamma": 0.5}}
    assert not bundle.G_ema.training
    torch.testing.assert_close(_image(bundle.G_ema, golden_tiny),
                               golden_tiny["outputs"]["img_full_psi07_const"],
                               rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        logits = bundle.D(golden_tiny["inputs"]["d_img"], golden_tiny["inputs"]["d_c"])
    torch.testing.assert_close(logits, golden_tiny["outputs"]["d_logits"], rtol=1e-5, atol=1e-5)
    for part, ref in (("G", "G_state_dict"), ("D", "D_state_dict")):
        state = getattr(bundle, part).state_dict()
        assert all(torch.equal(state[k], v) for k, v in golden_tiny[ref].items())


def test_g_ema_only_export(golden_tiny, tmp_path):
    G, _ = _nets(golden_tiny)
    path = files.save_model(tmp_path / "g_ema.pt", G_ema=G)
    raw = torch.load(path, weights_only=True)
    assert "G" not in raw and "D" not in raw and "D_kwargs" not in raw
    bundle = files.load_model(path)
    assert bundle.G is None and bundle.D is None
    assert torch.equal(_image(bundle.G_ema, golden_tiny), _image(G, golden_tiny))


def test_metadata_must_be_json(golden_tiny, tmp_path):
    G, _ = _nets(golden_tiny)
    with pytest.raises(UserError, match=r"metadata\.when: .*object"):
        files.save_model(tmp_path / "m.pt", G_ema=G, metadata={"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_truncated_file(model_file):
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"model\.pt: the file is truncated or corrupt"):
        files.load_model(model_file)


def test_corrupt_zip_member(model_file):
    data = bytearray(model_file.read_bytes())
    with zipfile.ZipFile(model_file) as archive:
        member = max(archive.infolist(), key=lambda i: i.file_size)
    start = member.header_offset + 30 + len(member.filename) + len(member.extra) + 64
    data[start:start + 256] = bytes(256)
    model_file.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"model\.pt: the file is truncated or corrupt"):
        files.load_model(model_file)


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(b"\x13\x37" + torch.randint(0, 256, (4000,), dtype=torch.uint8,
                                                generator=torch.Generator().manual_seed(0))
                     .numpy().tobytes())
    with pytest.raises(UserError, match=r"noise\.pt: not a model file"):
        files.load_model(path)


def test_random_bytes_behind_a_zip_header(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    with pytest.raises(UserError, match=r"noise\.pt: the file is truncated or corrupt"):
        files.load_model(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(UserError, match=r"empty\.pt: the file is empty"):
        files.load_model(path)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match=r"nothere\.pt: no such file"):
        files.load_model(tmp_path / "nothere.pt")


def test_torch_file_without_marker(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"G_ema": {}, "weights": torch.zeros(3)}, path)
    with pytest.raises(UserError, match=r"other\.pt: not an sg2 model file .*found None"):
        files.load_model(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(UserError, match=r"other\.pt: not an sg2 model file .*found 'list'"):
        files.load_model(path)


class _Gadget:
    pass


class _RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("make, refused", [
    (lambda tmp: _Gadget(), f"{__name__}._Gadget"),
    (lambda tmp: _RunsACommand(tmp / "pwned"), f"{os.system.__module__}.system"),
])
def test_torch_file_with_code_objects(tmp_path, make, refused):
    """Refused, naming the object; PyTorch's advice to re-run with weights_only=False (or to
    allow the class) is not passed on: we never load untrusted pickles."""
    path = tmp_path / "gadget.pt"
    torch.save({"format": "sg2-model", "G_ema": make(tmp_path)}, path)
    with pytest.raises(UserError) as caught:
        files.load_model(path)
    message = str(caught.value)
    assert message == (f"gadget.pt: cannot be read safely: it contains objects we refuse to "
                       f"load ({refused}); a model file holds only tensors and plain values")
    assert "weights_only" not in message and "trust" not in message
    assert not (tmp_path / "pwned").exists()


def test_newer_format_version(model_file):
    _rewrite(model_file, lambda p: p.update(format_version=99))
    with pytest.raises(UserError, match=r"model\.pt: format_version 99 was written by a newer "
                                        r"sg2-container; this one reads versions up to 1"):
        files.load_model(model_file)


@pytest.mark.parametrize("version", [0, "1", None])
def test_unknown_format_version(model_file, version):
    _rewrite(model_file, lambda p: p.update(format_version=version))
    with pytest.raises(UserError, match=r"model\.pt: unknown format_version"):
        files.load_model(model_file)


def test_migrations_run_in_order(model_file, monkeypatch):
    """A version-0 payload goes through _MIGRATIONS[0]; the table is the only upgrade path."""
    _rewrite(model_file, lambda p: p.update(format_version=0, metadata={"old": True}))
    with pytest.raises(UserError, match="unknown format_version 0"):
        files.load_model(model_file)
    monkeypatch.setattr(files, "FORMAT_VERSION", 2)
    _rewrite(model_file, lambda p: p.update(format_version=1))
    with pytest.raises(UserError, match="no upgrade path from format_version 1"):
        files.read_model_payload(model_file)
    monkeypatch.setitem(files._MIGRATIONS, 1, lambda p: {**p, "metadata": {"upgraded": True}})
    payload = files.read_model_payload(model_file)
    assert payload["format_version"] == 2 and payload["metadata"] == {"upgraded": True}


def test_missing_tensor(model_file):
    _rewrite(model_file, lambda p: p["G_ema"].pop("synthesis.b8.conv0.weight"))
    with pytest.raises(UserError, match=r"^model\.pt: G_ema: missing tensor "
                                        r"'synthesis\.b8\.conv0\.weight'$"):
        files.load_model(model_file)


def test_extra_tensor(model_file):
    _rewrite(model_file, lambda p: p["D"].update({"b4.extra.weight": torch.zeros(2)}))
    with pytest.raises(UserError, match=r"^model\.pt: D: unexpected tensor 'b4\.extra\.weight'"):
        files.load_model(model_file)


def test_ill_shaped_tensor(model_file):
    _rewrite(model_file, lambda p: p["G"].update({"synthesis.b8.conv0.weight": torch.zeros(3, 4)}))
    with pytest.raises(UserError, match=r"^model\.pt: G: tensor 'synthesis\.b8\.conv0\.weight' has "
                                        r"shape \[3, 4\] but the network expects "
                                        r"\[64, 64, 3, 3\]$"):
        files.load_model(model_file)


def test_several_problems_in_one_error(model_file):
    def change(p):
        p["G_ema"].pop("mapping.w_avg")
        p["G_ema"]["mapping.fc0.bias"] = torch.zeros(5)
    _rewrite(model_file, change)
    with pytest.raises(UserError) as info:
        files.load_model(model_file)
    message = str(info.value)
    assert "tensor 'mapping.fc0.bias' has shape [5]" in message
    assert "missing tensor 'mapping.w_avg'" in message


def test_bad_kwargs(model_file):
    _rewrite(model_file, lambda p: p["G_kwargs"].update(bogus=1))
    with pytest.raises(UserError, match=r"model\.pt: G_ema: cannot build Generator .*bogus"):
        files.load_model(model_file)


def test_missing_g_ema(model_file):
    _rewrite(model_file, lambda p: p.pop("G_ema"))
    with pytest.raises(UserError, match=r"model\.pt: the model file has no G_ema"):
        files.load_model(model_file)


def test_interrupted_save_keeps_previous_file(model_file, golden_tiny, monkeypatch):
    before = model_file.read_bytes()

    def torch_save_that_dies(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", torch_save_that_dies)
    G, _ = _nets(golden_tiny)
    with pytest.raises(OSError, match="disk full"):
        files.save_model(model_file, G_ema=G)
    assert model_file.read_bytes() == before
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["model.pt"]


def test_save_replaces_atomically(model_file, golden_tiny):
    G, _ = _nets(golden_tiny)
    files.save_model(model_file, G_ema=G, metadata={"second": True})
    assert files.load_model(model_file).metadata == {"second": True}
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["model.pt"]


def test_a_model_file_nested_thousands_deep_is_a_user_error(tmp_path):
    """kwargs nested 20000 deep (torch.load reads them fine) crashed the checks with a
    RecursionError: 'a bug', exit 2."""
    import sys

    deep: list = []
    for _ in range(20000):
        deep = [deep]
    kwargs = dict(z_dim=8, w_dim=8, c_dim=0, img_resolution=8, img_channels=3,
                  mapping_kwargs=dict(num_layers=1),
                  synthesis_kwargs=dict(channel_base=64, channel_max=8), extra=deep)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # only to write the file
    try:
        torch.save({"format": "sg2-model", "format_version": 1, "G_kwargs": kwargs,
                    "G_ema": {}, "metadata": {}}, tmp_path / "deep.pt")
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(UserError, match="deep.pt: its contents are nested too deeply"):
        files.load_model(tmp_path / "deep.pt")


def test_kwargs_within_the_bounds_build_nothing_real_before_the_tensors_fit(tmp_path,
                                                                            monkeypatch):
    """A 1.6 KB file within every per-field bound described an 8 GB generator, built (and
    allocated) before its empty state dict was found wanting: the fit is now checked on the
    meta device first."""
    from sg2_container.models import networks, state

    built_on = []

    class Recording(networks.Generator):
        def __init__(self, **kwargs):
            built_on.append(torch.empty(()).device.type)
            super().__init__(**kwargs)

    monkeypatch.setattr(networks, "Generator", Recording)
    kwargs = dict(z_dim=512, w_dim=512, c_dim=0, img_resolution=256, img_channels=3,
                  mapping_kwargs=dict(num_layers=8),
                  synthesis_kwargs=dict(channel_base=32768, channel_max=512))
    torch.save({"format": "sg2-model", "format_version": 1, "G_kwargs": kwargs, "G_ema": {},
                "metadata": {}}, tmp_path / "hollow.pt")
    assert (tmp_path / "hollow.pt").stat().st_size < 4096
    with pytest.raises(UserError, match=r"hollow.pt: G_ema: missing tensor"):
        files.load_model(tmp_path / "hollow.pt")
    assert built_on == ["meta"]
    assert state.build_network("G_ema", kwargs, "x").img_resolution == 256  # no state: built


@pytest.mark.parametrize("value, found", [
    (torch.arange(64, dtype=torch.int64), r"is int64 but the network expects real floating "
                                          r"point \(float32\)"),
    (torch.ones(64, dtype=torch.complex64), r"is complex64 but the network expects real"),
    (torch.ones(64, dtype=torch.bool), r"is bool but the network expects real"),
    (torch.tensor([float("nan"), float("inf"), -float("inf")] + [0.0] * 61),
     r"has 3 non-finite values \(NaN or inf\)"),
])
def test_tensors_that_are_no_finite_floats_are_refused(model_file, value, found):
    _rewrite(model_file, lambda p: p["G_ema"].update({"synthesis.b8.conv0.bias": value}))
    with pytest.raises(UserError, match=r"^model\.pt: G_ema: tensor 'synthesis\.b8\.conv0\.bias' "
                                        + found):
        files.load_model(model_file)


def test_float64_and_float16_tensors_still_load(model_file, golden_tiny):
    def change(p):
        p["G_ema"]["synthesis.b8.conv0.bias"] = p["G_ema"]["synthesis.b8.conv0.bias"].double()
        p["G_ema"]["mapping.w_avg"] = p["G_ema"]["mapping.w_avg"].half()
    _rewrite(model_file, change)
    assert files.load_model(model_file).G_ema.mapping.w_avg.dtype == torch.float32
