"""The LPIPS VGG16 distance: equal to the lpips package's, weights only from files, clear errors."""
import pytest
import torch

from sg2_container.errors import UserError
from sg2_container.inference.lpips_vgg import LpipsVgg16, _load_heads, load_distance_network


# lpips still calls torchvision with the deprecated `pretrained=`; that is lpips' affair.
@pytest.mark.filterwarnings("ignore:The parameter 'pretrained' is deprecated")
@pytest.mark.filterwarnings("ignore:Arguments other than a weight enum")
def test_distance_equals_the_lpips_packages_vgg_distance(random_vgg16_file):
    import lpips

    ours, _ = load_distance_network(random_vgg16_file)
    # pnet_rand: lpips builds torchvision's VGG16 without weights (no download); we copy ours in.
    reference = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False).eval()
    theirs = [m for s in (reference.net.slice1, reference.net.slice2, reference.net.slice3,
                          reference.net.slice4, reference.net.slice5) for m in s]
    for mine, other in zip(ours.layers, theirs):
        assert type(mine) is type(other)
        if isinstance(mine, torch.nn.Conv2d):
            other.weight.data.copy_(mine.weight)
            other.bias.data.copy_(mine.bias)
    g = torch.Generator().manual_seed(1)
    a = torch.rand([2, 3, 48, 48], generator=g) * 255
    b = torch.rand([2, 3, 48, 48], generator=g) * 255
    with torch.no_grad():
        expected = reference(a / 127.5 - 1, b / 127.5 - 1).flatten()
        got = ours.distance(a, b)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-6)
    assert float(ours.distance(a, a).abs().max()) == 0


def test_the_weights_file_is_loaded_and_its_classifier_ignored(random_vgg16_file):
    state = torch.load(random_vgg16_file, weights_only=True)
    assert any(k.startswith("classifier.") for k in state)  # the file has a classifier part
    net, source = load_distance_network(random_vgg16_file)
    assert source.path == random_vgg16_file and not source.rehearsal
    assert torch.equal(net.layers[28].weight, state["features.28.weight"])
    assert torch.equal(net.layers[0].bias, state["features.0.bias"])


def test_the_environment_variable_names_the_file(random_vgg16_file, monkeypatch):
    monkeypatch.setenv("SG2_VGG16_WEIGHTS", str(random_vgg16_file))
    _, source = load_distance_network(None)
    assert source.path == random_vgg16_file


def test_no_weights_is_an_error_that_says_what_to_supply(monkeypatch, tmp_path):
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    with pytest.raises(UserError) as error:
        load_distance_network(None)
    for words in ("vgg16-397923af.pth", "--vgg16", "SG2_VGG16_WEIGHTS", "--allow-random-vgg16"):
        assert words in str(error.value)
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError, match="nope.pth does not exist"):
        load_distance_network(missing)


def test_a_file_that_is_not_vgg16_is_refused(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3, 3, 3)}, wrong)
    with pytest.raises(UserError, match="wrong.pth do not fit torchvision's VGG16"):
        load_distance_network(wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="garbage.pth is not a PyTorch weights file that loads "
                                        "without running code") as refused:
        load_distance_network(garbage)
    # torch's own text advises weights_only=False ("arbitrary code execution"): never passed on.
    assert "weights_only" not in str(refused.value)
    assert "vgg16-397923af.pth" in str(refused.value)  # and what to supply instead
    program = tmp_path / "program.pth"
    torch.save({"features.0.weight": print}, program)
    with pytest.raises(UserError, match="program.pth is not a PyTorch weights file") as refused:
        load_distance_network(program)
    assert "weights_only" not in str(refused.value)


def test_random_backbone_only_when_allowed_and_reproducible(monkeypatch, caplog):
    monkeypatch.delenv("SG2_VGG16_WEIGHTS", raising=False)
    first, source = load_distance_network(None, allow_random=True)
    second, _ = load_distance_network(None, allow_random=True)
    assert source.rehearsal
    assert "randomly initialised" in caplog.text
    assert torch.equal(first.layers[0].weight, second.layers[0].weight)


def test_heads_come_from_the_lpips_package_and_are_non_negative():
    heads = _load_heads()
    assert [h.numel() for h in heads] == [64, 128, 256, 512, 512]
    net = LpipsVgg16(heads)
    assert net.tap_after == [4, 9, 16, 23, 30]  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    assert all(float(h.min()) >= 0 for h in heads)
