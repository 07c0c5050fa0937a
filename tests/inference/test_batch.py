"""Request parsing of the batch job, in process (the job itself: test_infer_job.py)."""
import pytest

from sg2_container.errors import UserError
from sg2_container.inference.batch import (check_image, check_name, parse_request,
                                           read_requests, resolve_input)


def _parse(obj, tmp_path):
    return parse_request(0, "test", obj, data=tmp_path / "data", outdir=tmp_path / "out",
                         project_defaults={})


def test_requests_decode_through_the_option_schema(tmp_path):
    request = _parse({"style_mix": {"rows": "1-3", "cols": [4], "styles": [0, 1],
                                    "truncation-psi": "0.5"}}, tmp_path)
    assert request.status == "pending", request.message
    assert request.options.row_seeds == [1, 2, 3] and request.options.truncation_psi == 0.5


@pytest.mark.parametrize("obj,words", [
    ([1, 2], "one key naming its kind"),
    ({"generate": {}, "style_mix": {}}, "one key naming its kind"),
    ({"generate": [1]}, "must be a JSON object"),
    ({"stylemix": {}}, "did you mean 'style_mix'"),
    ({"generate": {"class_idx": -2}}, "class_idx=-2 is not allowed"),
    ({"generate": {"noise_mode": "loud"}}, "noise_mode='loud' is not allowed"),
    ({"style_mix": {"rows": [1]}}, "cols"),
    ({"interpolate": {"seeds": [1, 2], "frames": 0}}, "frames=0 is not allowed"),
    ({"generate": {"projected_w": "../secret.npz"}}, "without '..'"),
    ({"generate": {"projected_w": "/etc/secret.npz"}}, "relative"),
    ({"project": {"targets": [3]}}, "targets=3 is not allowed"),
    ({"project": {"targets": ["x\x00.png"]}}, "control characters"),
    ({"generate": {"projected_w": "w\n.npz"}}, "control characters"),
    ({"project": {"targets": ["a" * 300 + ".png"]}}, "at most 255 bytes"),
])
def test_bad_requests_are_failed_with_a_named_reason(tmp_path, obj, words):
    request = _parse(obj, tmp_path)
    assert request.status == "failed"
    assert words in request.message


def test_a_missing_file_is_not_a_parse_error(tmp_path):
    """The file may be one an earlier request has still to write: it is looked up at run time."""
    request = _parse({"generate": {"projected_w": "000-project/f/projected_w.npz"}}, tmp_path)
    assert request.status == "pending", request.message


def test_inputs_resolve_in_data_then_in_what_this_job_wrote(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    (out / "000-project" / "f").mkdir(parents=True)
    (data / "a.npz").write_bytes(b"x")
    (out / "000-project" / "f" / "projected_w.npz").write_bytes(b"x")
    name = "000-project/f/projected_w.npz"
    assert resolve_input("a.npz", "w", data, out, set()) == data / "a.npz"
    with pytest.raises(UserError, match="nor among the files earlier requests of this job wrote"):
        resolve_input(name, "w", data, out, set())  # an older run's file
    assert resolve_input(name, "w", data, out, {name}) == out / name
    with pytest.raises(UserError, match="relative"):
        check_name(str(data / "a.npz"), "w")


def test_a_target_that_is_not_an_image_is_named(tmp_path):
    bad = tmp_path / "face.png"
    bad.write_text("hello")
    with pytest.raises(UserError, match="target face.png: not an image"):
        check_image(bad)


@pytest.mark.parametrize("crash", [False, True])
def test_a_job_whose_requests_all_failed_is_a_crash_only_if_one_failed_unexpectedly(
        tmp_path, tiny_model, monkeypatch, crash):
    """Every request failing on its input is the user's to fix (UserError, exit 1); when one
    failed on an unexpected error (a bug, an out-of-memory) the job is a crash (exit 2)."""
    import json

    from sg2_container.inference import batch

    _, model = tiny_model
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests.jsonl").write_text(json.dumps({"generate": {"seeds": [1]}}) + "\n")

    def failing(*args, **kwargs):
        raise RuntimeError("CUDA out of memory") if crash else UserError("seed 1: not liked")

    monkeypatch.setattr(batch, "_run_one", failing)
    expected = RuntimeError if crash else UserError
    with pytest.raises(expected, match="no request succeeded") as raised:
        batch.run_requests(model=model, data=data, outdir=tmp_path / "out", device="cpu",
                           project_data_images=False)
    assert type(raised.value) is expected
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["counts"]["failed"] == 1


def test_a_conditional_model_asks_a_request_for_its_class_idx(tmp_path):
    """The class check spoke of --class only, a flag no requests.jsonl line has."""
    import json

    from sg2_container.inference import batch
    from sg2_container.models.files import save_model
    from tests.inference.conftest import tiny_generator

    model = tmp_path / "model.pt"
    save_model(model, G_ema=tiny_generator(c_dim=3))
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests.jsonl").write_text(
        json.dumps({"generate": {"seeds": [1]}}) + "\n"
        + json.dumps({"generate": {"seeds": [1], "class_idx": 2}}) + "\n")
    batch.run_requests(model=model, data=data, outdir=tmp_path / "out", device="cpu",
                       project_data_images=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    first, second = manifest["requests"]
    assert first["status"] == "failed" and second["status"] == "done", manifest
    assert "pass --class 0..2 (class_idx in a batch job's request)" in first["message"]


def test_a_hostile_name_fails_its_line_and_the_job_reads_on(tmp_path):
    """A NUL byte in a target crashed the whole job while the data images were matched to the
    requests' targets (os.path refuses embedded NULs): now that line alone fails."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "requests.jsonl").write_text('{"project": {"targets": ["x\\u0000.png"]}}\n'
                                         '{"generate": {"seeds": [1]}}\n')
    requests = read_requests(data, tmp_path / "out", project_defaults={},
                             project_data_images=True)
    assert [r.status for r in requests] == ["failed", "pending"]
    assert "control characters" in requests[0].message
