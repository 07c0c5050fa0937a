"""The image's VGG16 weights step: pinned checksum (the one the code documents), the file the
runtime points SG2_VGG16_WEIGHTS at, and a build argument that skips it."""
from sg2_container.inference.project_options import VGG16_FILE_NAME, VGG16_SHA256, VGG16_URL
from tests.docker.test_image_files import (
    DOCKERFILE,
    arg_defaults,
    env_values,
    parse_dockerfile,
    stages,
)


def test_the_weights_are_checked_against_the_pinned_sha256_and_used_by_default():
    by_stage = stages(parse_dockerfile(DOCKERFILE.read_text()))
    # torchvision names its files after the first 8 hex digits of their SHA-256
    assert VGG16_FILE_NAME == f"vgg16-{VGG16_SHA256[:8]}.pth"
    default_file = arg_defaults(by_stage[""])["VGG16_FILE"]
    assert default_file.startswith("/opt/venv/") and default_file.endswith("/" + VGG16_FILE_NAME)
    build = by_stage["build"]
    assert arg_defaults(build)["VGG16_URL"] == VGG16_URL
    runs = [i.value for i in build if i.keyword == "RUN" and "VGG16_FILE" in i.value]
    assert len(runs) == 1
    assert f"{VGG16_SHA256}  $VGG16_FILE.partial" in runs[0]
    assert "sha256sum --check --strict" in runs[0]
    assert 'if [ -z "$VGG16_FILE" ]' in runs[0]  # --build-arg VGG16_FILE= skips the download
    # the rename comes only after the check, so a bad download never lands at the final name
    assert runs[0].index("sha256sum") < runs[0].index('mv "$VGG16_FILE.partial" "$VGG16_FILE"')
    runtime = by_stage["runtime"]
    assert env_values(runtime)["SG2_VGG16_WEIGHTS"] == "${VGG16_FILE}"
    assert "VGG16_FILE" in [i.value.partition("=")[0] for i in runtime if i.keyword == "ARG"]
