"""Reference network pickles: imported without running their code, refused when they reach
for anything else, and exported so that the reference's own loader can read them."""
import collections
import io
import os
import subprocess

import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.models import files, reference_pickle
from sg2_container.models.networks import Discriminator, Generator
from tests.models import refpickle_helpers as helpers


def _image(G, golden):
    inputs = golden["inputs"]
    with torch.no_grad():
        return G(inputs["z"], inputs["c"], truncation_psi=0.7, noise_mode="const")


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert sa[name].dtype == sb[name].dtype and torch.equal(sa[name], sb[name]), name


@pytest.fixture
def native_bundle(golden_tiny, tmp_path):
    G = Generator(**golden_tiny["G_kwargs"])
    G.load_state_dict(golden_tiny["G_state_dict"])
    D = Discriminator(**golden_tiny["D_kwargs"])
    D.load_state_dict(golden_tiny["D_state_dict"])
    path = files.save_model(tmp_path / "native.pt", G_ema=G, G=G, D=D)
    return files.load_model(path)


VARIANTS = {
    # what the reference writes under PyTorch 2.x / NumPy 2
    "modern": dict(storage="native", numpy_scalars="new"),
    # what the published pickles hold (PyTorch 1.7, NumPy 1.x, train.py's EasyDicts)
    "legacy": dict(storage="legacy", numpy_scalars="old", easydict=True, protocol=3),
    "zip-storage": dict(storage="zip", numpy_scalars=None, protocol=2),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_import_matches_native_file_and_golden(variant, golden_tiny, native_bundle, tmp_path):
    kwargs = dict(VARIANTS[variant])
    protocol = kwargs.pop("protocol", 4)
    marker = tmp_path / "module_src_ran"
    path = tmp_path / "network-snapshot-000120.pkl"
    helpers.write_reference_pickle(
        path, helpers.golden_snapshot(golden_tiny, helpers.marker_source(marker), **kwargs),
        protocol=protocol)

    bundle = files.load_model(path)
    assert bundle.source_kind == "reference-pickle" and bundle.format_version is None
    for part in ("G", "D", "G_ema"):
        _assert_same_state(getattr(bundle, part), getattr(native_bundle, part))
    image = _image(bundle.G_ema, golden_tiny)
    assert torch.equal(image, _image(native_bundle.G_ema, golden_tiny))
    torch.testing.assert_close(image, golden_tiny["outputs"]["img_full_psi07_const"],
                               rtol=1e-4, atol=1e-4)
    assert bundle.G_ema.init_kwargs == golden_tiny["G_kwargs"]
    assert bundle.metadata["kimg"] == 120
    assert bundle.metadata["augment_p"] == 0.25
    assert bundle.metadata["training_set_kwargs"]["path"] == "data.zip"
    assert not marker.exists()


def test_records_are_inert(golden_tiny, tmp_path):
    marker = tmp_path / "module_src_ran"
    path = helpers.write_reference_pickle(
        tmp_path / "x.pkl", helpers.golden_snapshot(golden_tiny, helpers.marker_source(marker),
                                                    easydict=True))
    data = reference_pickle.read_reference_pickle(path)
    g = data["G_ema"]
    assert isinstance(g, reference_pickle.PersistentRecord) and g.class_name == "Generator"
    assert "module_src" not in vars(g) and not marker.exists()
    assert type(g.state["_init_kwargs"]["mapping_kwargs"]) is not dict  # EasyDict stand-in
    assert isinstance(g.state["_init_kwargs"]["mapping_kwargs"], dict)
    flat = reference_pickle.flatten_state(g.state)
    assert list(flat) == list(golden_tiny["G_state_dict"])


def test_legacy_storage_blob_is_read_with_weights_only():
    """PyTorch < 1.6 nested its storages as non-zip torch.save blobs; weights_only reads them."""
    t = torch.arange(6, dtype=torch.float32)
    buf = io.BytesIO()
    torch.save(t, buf, _use_new_zipfile_serialization=False)
    assert not buf.getvalue().startswith(b"PK")
    assert torch.equal(torch.load(io.BytesIO(buf.getvalue()), weights_only=True), t)
    storage = helpers._StorageBlob(t, legacy=True).__reduce__()[1][0]
    rebuilt = reference_pickle._rebuild_tensor_v2(
        reference_pickle._load_storage_from_bytes(storage), 0, (2, 3), (3, 1), False, {})
    assert torch.equal(rebuilt, t.view(2, 3))


# --- malicious pickles ----------------------------------------------------------------------


def _expect_refused(path, global_name, marker):
    with pytest.raises(UserError) as info:
        files.load_model(path)
    assert str(info.value).startswith(f"refusing to load {path.name}: it references {global_name}")
    assert "which a network pickle never needs" in str(info.value)
    assert not marker.exists()


def test_os_system_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    helpers.write_reference_pickle(path, {"G_ema": helpers.Evil(os.system, f"touch {marker}")})
    _expect_refused(path, f"{os.system.__module__}.system", marker)


def test_builtins_eval_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    code = f"open({str(marker)!r}, 'w')"
    helpers.write_reference_pickle(path, {"G_ema": helpers.Evil(eval, code)}, protocol=2)
    _expect_refused(path, "builtins.eval", marker)


def test_nested_subprocess_popen_is_refused(golden_tiny, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    snapshot = helpers.golden_snapshot(
        golden_tiny, "", extra_child_state={"act": helpers.Evil(subprocess.Popen,
                                                                ["touch", str(marker)])})
    helpers.write_reference_pickle(path, snapshot)
    _expect_refused(path, "subprocess.Popen", marker)


def test_arbitrary_class_is_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    helpers.write_reference_pickle(path, {"G_ema": collections.Counter(a=1)})
    with pytest.raises(UserError, match=r"it references collections\.Counter"):
        files.load_model(path)


def test_tensorflow_pickle_gets_a_pointer(tmp_path):
    net = helpers.named_call("dnnlib.tflib.network", "Network")
    path = helpers.write_reference_pickle(tmp_path / "tf.pkl", (net, net, net), protocol=3)
    with pytest.raises(UserError, match=r"tf\.pkl: it references dnnlib\.tflib\.network\.Network: "
                                        r"this is a TensorFlow-era .*legacy\.py"):
        files.load_model(path)


def test_truncated_pickle(golden_tiny, tmp_path):
    path = helpers.write_reference_pickle(tmp_path / "cut.pkl",
                                          helpers.golden_snapshot(golden_tiny, ""))
    path.write_bytes(path.read_bytes()[:50_000])
    with pytest.raises(UserError, match=r"cut\.pkl: the network pickle is truncated or corrupt"):
        files.load_model(path)


def test_pickle_of_wrong_shapes(golden_tiny, tmp_path):
    golden = dict(golden_tiny)
    golden["G_state_dict"] = dict(golden["G_state_dict"])
    golden["G_state_dict"]["mapping.fc1.weight"] = torch.zeros(3, 3)
    path = helpers.write_reference_pickle(tmp_path / "bad.pkl", helpers.golden_snapshot(golden, ""))
    with pytest.raises(UserError, match=r"^bad\.pkl: G: tensor 'mapping\.fc1\.weight' has shape "
                                        r"\[3, 3\] but the network expects \[128, 128\]$"):
        files.load_model(path)


def test_pickle_without_g_ema(golden_tiny, tmp_path):
    snapshot = helpers.golden_snapshot(golden_tiny, "")
    del snapshot["G_ema"]
    path = helpers.write_reference_pickle(tmp_path / "no_ema.pkl", snapshot)
    with pytest.raises(UserError, match=r"no_ema\.pkl: the network pickle has no G_ema"):
        files.load_model(path)


def test_positional_init_args_are_refused(golden_tiny, tmp_path):
    snapshot = helpers.golden_snapshot(golden_tiny, "")
    snapshot["D"].meta["state"]["_init_args"] = (0, 32)
    path = helpers.write_reference_pickle(tmp_path / "args.pkl", snapshot)
    with pytest.raises(UserError, match=r"args\.pkl: D: has positional constructor args"):
        files.load_model(path)


def test_wrong_class_is_refused(golden_tiny, tmp_path):
    snapshot = helpers.golden_snapshot(golden_tiny, "")
    snapshot["G_ema"], snapshot["D"] = snapshot["D"], snapshot["G_ema"]
    path = helpers.write_reference_pickle(tmp_path / "swap.pkl", snapshot)
    with pytest.raises(UserError,
                       match=r"swap\.pkl: G_ema: is a Discriminator; expected a Generator"):
        files.load_model(path)


# --- export ---------------------------------------------------------------------------------


def test_export_reads_back_identically(native_bundle, golden_tiny, tmp_path):
    path = reference_pickle.save_reference_pickle(
        tmp_path / "export.pkl", G_ema=native_bundle.G_ema, G=native_bundle.G,
        D=native_bundle.D, metadata={"training_set_kwargs": {"path": "x.zip"}, "kimg": 7})
    assert files.sniff_kind(path) == "pickle"
    bundle = files.load_model(path)
    for part in ("G", "D", "G_ema"):
        _assert_same_state(getattr(bundle, part), getattr(native_bundle, part))
        assert getattr(bundle, part).init_kwargs == getattr(native_bundle, part).init_kwargs
    assert torch.equal(_image(bundle.G_ema, golden_tiny), _image(native_bundle.G_ema, golden_tiny))
    assert bundle.metadata["training_set_kwargs"] == {"path": "x.zip"}
    assert bundle.metadata["kimg"] == 7

    data = reference_pickle.read_reference_pickle(path)
    assert list(data) == ["training_set_kwargs", "G", "D", "G_ema", "augment_pipe",
                          "sg2_metadata"]
    g = data["G_ema"]
    assert g.version == 6 and g.state["_init_args"] == () and g.state["training"] is False
    assert all(t.dtype == torch.float32 and t.device.type == "cpu"
               for t in reference_pickle.flatten_state(g.state).values())
    # what the reference's loader runs: our portable source, never an import of sg2-container
    # (the loader itself is exercised in test_reference_interop.py)
    assert g.class_name == "Generator" and "_init_kwargs" in g.state
    assert g.state["_init_kwargs"] == native_bundle.G_ema.init_kwargs
    assert g.state["img_resolution"] == native_bundle.G_ema.img_resolution  # plain attributes too


@pytest.mark.parametrize("value, found", [
    (torch.zeros(128, 128, dtype=torch.int64), "is int64 but the network expects real"),
    (torch.full((128, 128), float("nan")), "has 16384 non-finite values"),
])
def test_pickle_of_integer_or_non_finite_weights(golden_tiny, tmp_path, value, found):
    golden = dict(golden_tiny)
    golden["G_state_dict"] = dict(golden["G_state_dict"])
    golden["G_state_dict"]["mapping.fc1.weight"] = value
    path = helpers.write_reference_pickle(tmp_path / "bad.pkl", helpers.golden_snapshot(golden, ""))
    with pytest.raises(UserError, match=rf"^bad\.pkl: G: tensor 'mapping\.fc1\.weight' {found}"):
        files.load_model(path)
